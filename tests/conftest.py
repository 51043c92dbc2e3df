"""Fixtures shared by every test layer.

`store` runs a test on SQLite, PostgreSQL and MariaDB. A database the machine lacks is
skipped with its name on a laptop, and is a failure under CI=true (dramatiq's habit): CI must
never go green by skipping the real thing.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from drayman.store.engine import Store
from drayman.store.schema import metadata
from support.accounts import TASK_USER
from support.passwords import CountingPasswords
from support.services import missing, unreachable

SLOW_TEST_S = 10  # what a `slow` test is taken to last unless it says (`slow(seconds=...)`)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files whose `slow` tests last longest first, each file's own order kept.

    `scripts/test` hands out whole files (`--dist loadfile --no-loadscope-reorder`) in
    collection order; a long file handed out last keeps one process busy while the other
    idles (the 3-minute scheduler chaos test did, at the end of the suite). Longest first
    shortens that tail, and every xdist process sorts alike, so they agree on the order.
    Without the flag xdist puts the files with the most tests first, and this order is lost.
    """
    slow_s: Counter[Path] = Counter()
    for item in items:
        marker = item.get_closest_marker("slow")
        if marker is not None:
            slow_s[item.path] += marker.kwargs.get("seconds", SLOW_TEST_S)
    items.sort(key=lambda item: -slow_s[item.path])


PG_ADMIN_URL = os.environ.get(
    "DRAYMAN_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
MYSQL_ADMIN_URL = os.environ.get(
    "DRAYMAN_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"
)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL database for this test session."""
    name = f"drayman_test_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        unreachable("PostgreSQL at 127.0.0.1:5432", exc)
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def mysql_url() -> Iterator[str]:
    """A throwaway MariaDB/MySQL database for this test session."""
    name = f"drayman_test_{uuid.uuid4().hex[:8]}"
    admin = create_engine(MYSQL_ADMIN_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE DATABASE `{name}`"))
    except Exception as exc:
        admin.dispose()
        unreachable("MariaDB at 127.0.0.1:3306", exc)
    yield MYSQL_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with admin.begin() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    admin.dispose()


_SCHEMA_MADE: set[str] = set()  # server databases this session has created the schema in


def _fresh_store(url: str) -> Store:
    """A store on `url` with the full schema and no rows, its ids starting at 1 again.

    Creating the schema costs about 2 s a test on MariaDB, so a server database this session
    has already made it in is emptied instead. Whatever a test did to the schema (the migration
    tests drop it, acceptance tests drop PostgreSQL's whole public schema) makes the emptying
    fail, and the schema is made again."""
    store = Store(url)
    if url in _SCHEMA_MADE:
        try:
            _empty(store)
            return store
        except DBAPIError:
            pass
    metadata.drop_all(store.engine)
    metadata.create_all(store.engine)
    if not url.startswith("sqlite"):
        _SCHEMA_MADE.add(url)
    return store


def _empty(store: Store) -> None:
    """Delete every row of drayman's tables and restart their id counters."""
    tables = metadata.sorted_tables
    with store.engine.begin() as conn:
        if store.dialect == "postgresql":
            names = ", ".join(f'"{table.name}"' for table in tables)
            conn.exec_driver_sql(f"TRUNCATE TABLE {names} RESTART IDENTITY CASCADE")
            return
        # TRUNCATE makes each table anew (no delete-marked rows left for InnoDB to lock)
        conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 0")
        try:
            for table in tables:
                conn.exec_driver_sql(f"TRUNCATE TABLE `{table.name}`")
        finally:
            conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 1")


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = _fresh_store(f"sqlite:///{tmp_path / 'drayman.db'}")
    yield store
    store.dispose()


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """An empty store with the full schema, on each supported database in turn."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'drayman.db'}"
    elif request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
    else:
        url = request.getfixturevalue("mysql_url")
    store = _fresh_store(url)
    yield store
    store.dispose()


@pytest.fixture
def counting_passwords() -> CountingPasswords:
    """A fresh `CountingPasswords` (its count starts at 0)."""
    return CountingPasswords()


@pytest.fixture(scope="session")
def task_user() -> pwd.struct_passwd:
    """The throwaway unprivileged user tries run as (created once, left for the next run)."""
    if os.geteuid() != 0:
        message = (
            "running tasks as another user needs root (to create the user and to switch a "
            "try to it); run this test as root"
        )
        missing(message)
    try:
        return pwd.getpwnam(TASK_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", TASK_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(TASK_USER)


@pytest.fixture
def open_root() -> Iterator[Path]:
    """A directory every user may traverse (pytest's own tmp dirs are 0700): so a secret key
    file the task cannot read is refused by its own mode, not by a parent directory."""
    root = Path(tempfile.mkdtemp(prefix="drayman-isolation-", dir="/tmp"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
