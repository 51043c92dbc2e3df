"""Throwaway servers and databases for the chaos tests: theirs to break, nobody else's.
The fixtures of the same names in tests/integration/conftest.py hand these to tests.

- `own_database`: a migrated database of the test's own on the machine's PostgreSQL or
  MariaDB. Creating a database is harmless to the shared servers; a test that must restart a
  database server needs its own server instead (chaos_servers.py).
- `running_redis` / `running_rabbitmq`: a broker of the test's own on free ports in a temp
  dir, which the test may SIGKILL and start again empty. RabbitMQ reuses the machine's epmd
  (a node name is all it registers there) and boots in about 5 s.
- `limited_memory_cgroup`: a child memory cgroup with a small limit, for a task that must be
  really OOM-killed; None where this machine lets nobody create one.

A missing service or binary skips on a laptop and fails under CI=true.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from drayman.store import migrate
from drayman.store.engine import Store
from support.services import missing

RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # the real one: Debian's wrapper su's


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- databases ---------------------------------------------------------------------------------


@contextlib.contextmanager
def own_database(session_url: str) -> Iterator[str]:
    """The URL of a migrated database of its own, on the server of the session's database at
    `session_url` (PostgreSQL or MariaDB); dropped on exit."""
    if session_url.startswith("postgresql"):
        admin_url = session_url.rsplit("/", 1)[0] + "/postgres"
        quote, drop_suffix = '"', " WITH (FORCE)"
    else:
        admin_url = session_url
        quote, drop_suffix = "`", ""
    name = f"drayman_chaos_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {quote}{name}{quote}"))
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    store = Store(url)
    migrate.upgrade(store)
    store.dispose()
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {quote}{name}{quote}{drop_suffix}"))
        admin.dispose()


# -- brokers -----------------------------------------------------------------------------------


@dataclass
class Redis:
    """A throwaway redis-server subprocess: this test's, and only this test's."""

    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        self.process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.workdir)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client(lambda r: r.ping()):
                    return
            except Exception:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"redis-server on port {self.port} did not come up")
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no save; with --save "" nothing survives."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def empty(self) -> bool:
        return bool(self.client(lambda r: r.dbsize()) == 0)

    def client(self, call: Callable[[Any], Any]) -> Any:
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=2)
        try:
            return call(client)
        finally:
            client.close()


@contextlib.contextmanager
def running_redis(tmp_path: Path) -> Iterator[Redis]:
    """A started throwaway Redis under `tmp_path`, SIGKILLed on exit."""
    if shutil.which("redis-server") is None:
        missing("redis-server is not installed (Debian package redis-server)")
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = Redis(free_port(), workdir)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@dataclass
class RabbitMQ:
    """A throwaway RabbitMQ node: its own name, ports, data and logs; no plugins.

    `kill()` SIGKILLs its process group (the start script and the Erlang VM; the VM's port
    helpers exit when it does); `start()` after `kill()` boots on a fresh, empty data dir, so
    even durable queues and persistent messages are gone, as on a new machine.
    """

    port: int
    dist_port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    boots: int = 0

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        self.boots += 1
        (self.workdir / "enabled_plugins").write_text("[].\n")
        env = {
            **os.environ,
            "RABBITMQ_NODENAME": f"drayman-chaos-{self.port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.workdir / f"mnesia-{self.boots}"),
            "RABBITMQ_LOG_BASE": str(self.workdir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.workdir / "enabled_plugins"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(self.workdir / "plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.workdir / "rabbitmq"),  # none: the defaults
            "RABBITMQ_PID_FILE": str(self.workdir / "rabbitmq.pid"),
        }
        with open(self.workdir / "server.out", "ab") as out:
            self.process = subprocess.Popen(
                [RABBITMQ_SERVER],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kill() takes the VM too
            )
        self._wait_until_serving()

    def _wait_until_serving(self) -> None:
        from kombu import Connection

        deadline = time.monotonic() + 60
        while True:
            try:
                with Connection(self.url, connect_timeout=1) as conn:
                    conn.ensure_connection(max_retries=1, timeout=1)
                return
            except Exception:
                assert self.process is not None
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = (self.workdir / "server.out").read_text(errors="replace")[-2000:]
                    pytest.fail(f"rabbitmq-server on port {self.port} did not come up:\n{log}")
                time.sleep(0.25)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@contextlib.contextmanager
def running_rabbitmq(tmp_path: Path) -> Iterator[RabbitMQ]:
    """A started throwaway RabbitMQ node under `tmp_path`, SIGKILLed on exit."""
    if not os.access(RABBITMQ_SERVER, os.X_OK):
        missing(f"{RABBITMQ_SERVER} is not installed (Debian package rabbitmq-server)")
    workdir = tmp_path / "rabbitmq"
    workdir.mkdir()
    server = RabbitMQ(free_port(), free_port(), workdir)
    server.start()
    try:
        yield server
    finally:
        server.kill()


# -- a memory cgroup ---------------------------------------------------------------------------


def _memory_cgroup_candidates() -> Iterator[tuple[Path, str]]:
    """(where a child cgroup of ours may go, the name of its limit file), v2 then v1."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2: memory must be delegated to our children
            for mount in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
                parent = mount / path.lstrip("/")
                with contextlib.suppress(OSError):
                    if "memory" in (parent / "cgroup.subtree_control").read_text().split():
                        yield parent, "memory.max"
        elif "memory" in controllers.split(","):
            yield Path("/sys/fs/cgroup/memory") / path.lstrip("/"), "memory.limit_in_bytes"


@contextlib.contextmanager
def limited_memory_cgroup() -> Iterator[Path | None]:
    """A fresh memory cgroup limited to 64 MiB (a process moves in by writing its pid to
    `cgroup.procs`), or None where this machine does not let us make one."""
    made: Path | None = None
    for parent, limit_file in _memory_cgroup_candidates():
        child = parent / f"drayman-oom-{uuid.uuid4().hex[:8]}"
        try:
            child.mkdir()
        except OSError:
            continue
        try:
            (child / limit_file).write_text(str(64 * 1024 * 1024))
        except OSError:
            child.rmdir()
            continue
        made = child
        break
    try:
        yield made
    finally:
        if made is not None:
            deadline = time.monotonic() + 10  # the killed task may still be exiting
            while True:
                try:
                    made.rmdir()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
