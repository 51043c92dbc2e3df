"""The `Store`: one engine, transactions, migrations and the database's clock.

SQLite is set up for many processes on one machine: WAL so readers never block the writer,
`BEGIN IMMEDIATE` for every write transaction so two writers queue on the busy timeout
instead of failing on a lock upgrade, and foreign keys on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection as Connection  # exported: callers type a transaction with it
from sqlalchemy import CursorResult, Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from drayman.exceptions import ConfigError
from drayman.redact import mask_url

SQLITE_BUSY_TIMEOUT_MS = 30_000

# For callers that hold a transaction or catch a database error: only the store imports
# SQLAlchemy (ADR 16).
DatabaseError = DBAPIError  # any error the database driver raised


class Store:
    """Access to the metadata database. Built once by the CLI and passed down."""

    def __init__(self, url: str, *, pool_size: int = 5) -> None:
        self.url = url
        self.engine = _create_engine(url, pool_size=pool_size)

    @property
    def dialect(self) -> str:
        """ "sqlite", "postgresql" or "mysql"."""
        return self.engine.dialect.name

    @property
    def supports_skip_locked(self) -> bool:
        """Whether several schedulers may share this database (row locks with SKIP LOCKED)."""
        return self.dialect in {"postgresql", "mysql"}

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A write transaction: committed on leaving the block, rolled back on an exception."""
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only connection (on SQLite a deferred transaction that never blocks)."""
        with self.engine.connect() as conn:
            conn.info["read_only"] = True
            try:
                yield conn
            finally:
                conn.rollback()
                conn.info.pop("read_only", None)

    def now(self) -> datetime:
        """The current time, aware UTC. Liveness checks on a shared database use `db_now`."""
        return datetime.now(UTC)

    def db_now(self, conn: Connection) -> datetime:
        """The database server's clock, so liveness never depends on one host's clock."""
        if self.dialect == "sqlite":
            return datetime.now(UTC)
        postgres = self.dialect == "postgresql"
        query = "SELECT CURRENT_TIMESTAMP" if postgres else "SELECT UTC_TIMESTAMP(6)"
        value: datetime = conn.execute(text(query)).scalar_one()
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def ping(self, conn: Connection) -> None:
        """Ask the database the least question there is: raises unless it answers."""
        conn.execute(text("SELECT 1"))

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent)."""
        from drayman.store.migrate import upgrade

        upgrade(self)

    def dispose(self) -> None:
        self.engine.dispose()


def _create_engine(url: str, *, pool_size: int) -> Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    if url.startswith("postgresql") or url.startswith("mysql"):
        kwargs: dict[str, Any] = {"pool_pre_ping": True, "pool_size": pool_size}
        if url.startswith("mysql"):
            kwargs["pool_recycle"] = 3600
            kwargs["isolation_level"] = "READ COMMITTED"
        try:
            return create_engine(url, **kwargs)
        except ModuleNotFoundError as exc:  # the URL's driver is an extra not installed
            from drayman.store.drivers import missing_driver

            raise missing_driver(url, exc) from None
    raise ConfigError(
        f"database_url {mask_url(url)!r}: unsupported database; use sqlite:///PATH, "
        "postgresql+psycopg://..., or mysql+pymysql://..."
    )


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite database URL; None for another database or an in-memory one."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[1] if "///" in url else ""
    path = path.split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def _sqlite_engine(url: str) -> Engine:
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        _create_private(path)
    engine = create_engine(url, poolclass=NullPool if not path else None)
    # pysqlite's own transaction handling is off; we emit BEGIN ourselves (SQLAlchemy recipe)
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _create_private(path: Path) -> None:
    """Create the database file 0600 before SQLite does (0644 under the usual umask): it holds
    password hashes, every run's conf and every log's whereabouts. SQLite gives its -wal and
    -shm files the mode of the database file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN" if conn.info.get("read_only") else "BEGIN IMMEDIATE")


def is_deadlock(exc: BaseException) -> bool:
    """Whether the database chose this transaction as a deadlock's victim (or gave up waiting
    for a lock): the transaction was rolled back and may simply be run again."""
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    if getattr(orig, "sqlstate", None) in {"40P01", "40001"}:  # PostgreSQL (psycopg)
        return True
    args: tuple[Any, ...] = tuple(getattr(orig, "args", ()))
    return bool(args) and args[0] in {1213, 1205}  # MySQL/MariaDB: deadlock, lock wait timeout


def inserted_id(result: CursorResult[Any]) -> int:
    """The primary key of the row a single-row INSERT created."""
    key = result.inserted_primary_key
    if key is None:
        raise RuntimeError("the INSERT returned no primary key")
    return int(key[0])
