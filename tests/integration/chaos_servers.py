"""Throwaway PostgreSQL and MariaDB servers for chaos tests: this test's, and only this test's.

A chaos test stops, kills and restarts its database server; it must never touch the machine's
shared one. `throwaway_database(kind)` makes a fresh server in a temporary directory on a free
port (`initdb` + `pg_ctl` as user postgres, since initdb refuses root; `mariadb-install-db` +
`mariadbd`), creates a database and yields the server; the server is killed and its directory
removed when the block ends, whether the test passed or not.

Both are tuned for tests, not for durability (no fsync): a restart here shows what drayman's
processes do when their connections break, not what the server does to survive a crash.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Protocol

import pytest
from sqlalchemy import create_engine, text

from support.services import missing

DATABASE = "drayman"
PG_BIN = Path(os.environ.get("DRAYMAN_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def not_installed(what: str) -> None:
    """Skip on a laptop without `what`; fail under CI=true."""
    missing(f"{what} is not installed; chaos tests need it to start a throwaway server")


class DatabaseServer(Protocol):
    """What a chaos test does to its database server."""

    kind: str  # "postgresql" or "mysql", as Store.dialect says
    port: int

    @property
    def url(self) -> str: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def kill(self) -> None: ...

    def restart(self, down_s: float) -> None: ...


def _wait_connectable(url: str, alive: Callable[[], bool], log: Path) -> None:
    """Until a plain connection succeeds; fail with the server's log if it dies or hangs."""
    deadline = time.monotonic() + START_TIMEOUT_S
    engine = create_engine(url)
    try:
        while True:
            try:
                with engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
                return
            except Exception as exc:
                if not alive() or time.monotonic() > deadline:
                    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
                    pytest.fail(f"the throwaway server at {url} did not come up ({exc}):\n{tail}")
                time.sleep(0.1)
    finally:
        engine.dispose()


class PostgresServer:
    """A PostgreSQL cluster in `base`, run as the postgres user on `port`."""

    kind = "postgresql"

    def __init__(self, base: Path, port: int) -> None:
        self.base, self.port = base, port
        self.data, self.log = base / "data", base / "server.log"

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _as_postgres(self, *argv: str) -> None:
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True
        )
        if done.returncode != 0:
            tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            pytest.fail(f"{' '.join(argv)} failed: {done.stderr}{done.stdout}\n{tail}")

    def init(self) -> None:
        shutil.chown(self.base, "postgres", "postgres")
        self._as_postgres(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-N"
        )
        self.start()
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{DATABASE}"'))
        engine.dispose()

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
            "-w", "-t", str(int(START_TIMEOUT_S)), "start",
        )  # fmt: skip
        _wait_connectable(self.admin_url, lambda: (self.data / "postmaster.pid").exists(), self.log)

    def stop(self) -> None:
        """A fast shutdown: every client's connection is cut, as in a restart for maintenance."""
        self._pg_ctl_stop("fast")

    def kill(self) -> None:
        """An immediate shutdown: no checkpoint, the next start recovers (as after a crash)."""
        self._pg_ctl_stop("immediate")

    def _pg_ctl_stop(self, mode: str) -> None:
        if (self.data / "postmaster.pid").exists():
            self._as_postgres(
                str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"
            )

    def restart(self, down_s: float) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()


class MariaDBServer:
    """A MariaDB server in `base`, run as root (as on this machine) on `port`."""

    kind = "mysql"

    def __init__(self, base: Path, port: int) -> None:
        self.base, self.port = base, port
        self.data, self.log = base / "data", base / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/{DATABASE}"

    def init(self) -> None:
        done = subprocess.run(
            [
                "mariadb-install-db", "--no-defaults", f"--datadir={self.data}", "--user=root",
                "--auth-root-authentication-method=normal", "--skip-test-db",
            ],
            capture_output=True,
            text=True,
        )  # fmt: skip
        if done.returncode != 0:
            pytest.fail(f"mariadb-install-db failed: {done.stderr}{done.stdout}")
        self.start()
        engine = create_engine(self.url.rsplit("/", 1)[0] + "/mysql")
        with engine.begin() as conn:
            conn.execute(text(f"CREATE DATABASE `{DATABASE}`"))
            # a TCP login from 127.0.0.1 is not root@localhost: let root in from there too
            conn.execute(text("CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'"))
            conn.execute(text("GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION"))
        engine.dispose()

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [
                    "mariadbd", "--no-defaults", f"--datadir={self.data}", f"--port={self.port}",
                    "--bind-address=127.0.0.1", f"--socket={self.base / 'sock'}", "--user=root",
                    f"--pid-file={self.base / 'mariadb.pid'}", "--skip-name-resolve",
                    "--innodb-flush-log-at-trx-commit=0", "--innodb-buffer-pool-size=64M",
                    "--innodb-log-file-size=16M", "--max-connections=300", "--skip-log-bin",
                    "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci",
                    "--innodb-print-all-deadlocks=ON",  # in server.log: who locked what
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        process = self.process
        _wait_connectable(
            self.url.rsplit("/", 1)[0] + "/mysql", lambda: process.poll() is None, self.log
        )

    def stop(self) -> None:
        """A normal shutdown (SIGTERM): clients' connections are cut."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: InnoDB recovers at the next start, as after a crash."""
        self._signal(signal.SIGKILL)

    def _signal(self, sig: signal.Signals) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def restart(self, down_s: float) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()


@contextmanager
def throwaway_database(kind: str) -> Iterator[DatabaseServer]:
    """A fresh, started server of `kind` ("postgresql" or "mysql") with an empty database."""
    server: PostgresServer | MariaDBServer
    base = Path(tempfile.mkdtemp(prefix=f"drayman-{kind}-"))
    try:
        if kind == "postgresql":
            if not (PG_BIN / "initdb").exists():
                not_installed(f"PostgreSQL's initdb ({PG_BIN})")
            server = PostgresServer(base, free_port())
        else:
            if shutil.which("mariadb-install-db") is None or shutil.which("mariadbd") is None:
                not_installed("MariaDB (mariadb-install-db and mariadbd)")
            server = MariaDBServer(base, free_port())
        try:
            server.init()
            yield server
        finally:
            with suppress(Exception):
                server.kill()
    finally:
        shutil.rmtree(base, ignore_errors=True)
