"""The services a benchmark runs against: a fresh database, a flushed broker, and the
`drayman scheduler` / `drayman worker` subprocesses, started, awaited until ready, stopped.

Each run gets its own DRAYMAN_HOME and DAG folder in a temp dir, a fresh database (a SQLite
file under the home, or a throwaway PostgreSQL database that is dropped afterwards), and a real
`drayman scheduler` subprocess with the local executor, or with the Celery executor plus
`drayman worker` subprocesses on a Redis database that is flushed before and after.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select, text

from bench.errors import BenchError

PG_ADMIN_URL = os.environ.get(
    "DRAYMAN_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
BROKER_URL = os.environ.get("DRAYMAN_BENCH_BROKER_URL", "redis://127.0.0.1:6379/13")


def drayman_bin() -> Path:
    """The real `drayman` entry point next to this Python (not a pyenv shim on PATH)."""
    path = Path(sys.executable).parent / "drayman"
    if not path.exists():
        raise BenchError(f"{path} does not exist: pip install -e . in this Python first")
    return path


@contextlib.contextmanager
def database(kind: str, home: Path) -> Iterator[str]:
    """A fresh database URL of `kind` ("sqlite" or "postgresql"), removed afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{(home / 'drayman.db').resolve()}"
        return
    if kind != "postgresql":
        raise BenchError(f"--db {kind!r}: use sqlite or postgresql")
    name = f"drayman_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        raise BenchError(f"cannot create a database on {PG_ADMIN_URL}: {exc}") from exc
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# -- the scheduler under test -----------------------------------------------------------------


@dataclass
class Server:
    """A `drayman scheduler` or `drayman standalone` subprocess and where its output goes."""

    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise BenchError(
                f"drayman (pid {self.pid}) exited with {self.process.returncode}; "
                f"its output:\n{self.tail()}"
            )

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no output)"

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, then wait; SIGKILL after `timeout_s`. Returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start(args: list[str], env: dict[str, str], log_path: Path) -> Server:
    """Start `drayman ARGS` with `env` added to this environment, output to `log_path`."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(drayman_bin()), *args],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return Server(process, log_path)


def drayman_env(
    home: Path,
    dags: Path,
    url: str,
    parallelism: int,
    *,
    executor: str = "local",
    broker_url: str | None = None,
    remote_poll_s: float | None = None,
    extra: tuple[tuple[str, str], ...] = (),
) -> dict[str, str]:
    """The DRAYMAN_* settings of the scheduler (and the Celery workers) under test."""
    env = {
        "DRAYMAN_HOME": str(home),
        "DRAYMAN_DAGS_FOLDER": str(dags),
        "DRAYMAN_DATABASE_URL": url,
        "DRAYMAN_EXECUTOR": executor,
        "DRAYMAN_PARALLELISM": str(parallelism),
        **dict(extra),
    }
    if executor == "celery":  # --parallelism: each queue's floor of tries in flight (ADR 17)
        env["DRAYMAN_CELERY_MIN_IN_FLIGHT"] = str(parallelism)
    if broker_url is not None:
        env["DRAYMAN_BROKER_URL"] = broker_url
    if remote_poll_s is not None:
        env["DRAYMAN_REMOTE_POLL_S"] = str(remote_poll_s)
    return env


@contextlib.contextmanager
def broker(executor: str) -> Iterator[str | None]:
    """The broker URL for `executor` (None for local): a Redis database flushed around use."""
    if executor == "local":
        yield None
        return
    if executor != "celery":
        raise BenchError(f"--executor {executor!r}: use local or celery")
    import redis

    client = redis.Redis.from_url(BROKER_URL)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        client.close()
        raise BenchError(f"cannot flush the broker database {BROKER_URL}: {exc}") from exc
    try:
        yield BROKER_URL
    finally:
        with contextlib.suppress(redis.RedisError):
            client.flushdb()
        client.close()


def migrate(env: dict[str, str]) -> None:
    """`drayman db migrate`, failing loudly with its output."""
    done = subprocess.run(
        [str(drayman_bin()), "db", "migrate"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(
            f"drayman db migrate failed ({done.returncode}):\n{done.stdout}{done.stderr}"
        )


def wait_ready(
    store: Any, server: Server, home: Path, dag_ids: list[str], timeout_s: float = 60.0
) -> None:
    """Until every DAG is parsed and active and the scheduler registered (doorbell bound)."""
    from drayman.store.schema import component, dag

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        server.check_alive()
        with contextlib.suppress(Exception), store.read() as conn:
            active = conn.execute(
                select(func.count())
                .select_from(dag)
                .where(dag.c.dag_id.in_(dag_ids), dag.c.is_active.is_(True))
            ).scalar_one()
            registered = conn.execute(
                select(func.count())
                .select_from(component)
                .where(
                    component.c.kind == "scheduler",
                    component.c.pid == server.pid,
                    component.c.state == "running",
                )
            ).scalar_one()
            if active == len(dag_ids) and registered and any(home.glob("scheduler-*.sock")):
                return
        time.sleep(0.05)
    raise BenchError(
        f"the scheduler did not parse {len(dag_ids)} DAG(s) within {timeout_s:.0f}s;"
        f" its output:\n{server.tail()}"
    )


def wait_workers(store: Any, pool: list[Server], timeout_s: float = 60.0) -> None:
    """Until every Celery worker registered itself as a running worker component."""
    from drayman.store.schema import component

    if not pool:
        return
    pids = [member.pid for member in pool]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for member in pool:
            member.check_alive()
        with contextlib.suppress(Exception), store.read() as conn:
            registered = conn.execute(
                select(func.count())
                .select_from(component)
                .where(
                    component.c.kind == "worker",
                    component.c.pid.in_(pids),
                    component.c.state == "running",
                )
            ).scalar_one()
            if registered == len(pids):
                return
        time.sleep(0.05)
    raise BenchError(
        f"{len(pids)} Celery worker(s) did not register within {timeout_s:.0f}s; "
        f"the first one's output:\n{pool[0].tail()}"
    )
