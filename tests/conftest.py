"""Fixtures shared by every test layer.

`store` runs a test on SQLite, PostgreSQL and MariaDB. A database the machine lacks is
skipped with its name on a laptop, and is a failure under CI=true (dramatiq's habit): CI must
never go green by skipping the real thing.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from drayman.auth.passwords import Passwords
from drayman.store.engine import Store
from drayman.store.schema import metadata

PG_ADMIN_URL = os.environ.get(
    "DRAYMAN_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
MYSQL_ADMIN_URL = os.environ.get(
    "DRAYMAN_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"
)
IN_CI = os.environ.get("CI", "").lower() == "true"


def _unavailable(what: str, exc: Exception) -> None:
    message = f"{what} is not reachable ({type(exc).__name__}: {exc}); install and start it"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: a missing service is a failure)")
    pytest.skip(message)


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
        _unavailable("PostgreSQL at 127.0.0.1:5432", exc)
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
        _unavailable("MariaDB at 127.0.0.1:3306", exc)
    yield MYSQL_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with admin.begin() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    admin.dispose()


def _fresh_store(url: str) -> Store:
    store = Store(url)
    metadata.drop_all(store.engine)
    metadata.create_all(store.engine)
    return store


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


class CountingPasswords(Passwords):
    """Real argon2id with small costs, counting the password checks (thread-safe): for tests
    that show how many guesses reach a check."""

    def __init__(self) -> None:
        super().__init__(memory_kib=256, time_cost=1, parallelism=1)
        self.calls = 0
        self._lock = threading.Lock()

    def verify(self, password_hash: str, password: str) -> bool:
        with self._lock:
            self.calls += 1
        return super().verify(password_hash, password)


@pytest.fixture
def counting_passwords() -> CountingPasswords:
    """A fresh `CountingPasswords` (its count starts at 0)."""
    return CountingPasswords()
