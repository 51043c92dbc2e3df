"""Chaos: the broker loses every queued message, and the scheduler sends them again.

The database is the truth, the broker only transport. 200 tries are queued and sent to a
throwaway Redis with no worker listening; Redis is killed (SIGKILL) and started again empty,
so every message is gone. The scheduler finds the tries still QUEUED and unclaimed after
`queued_timeout_s` and sends them again; a real `drayman worker` then runs each exactly once.

Redis here is this test's own `redis-server` on a free port, never the shared one; PostgreSQL
is a throwaway database (the `database` fixture of test_celery_executor).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, func, select
from test_celery_executor import CLI, IN_CI, Worker, database  # noqa: F401 (database: fixture)

from drayman.bundles.processor import DagProcessor
from drayman.config import Settings
from drayman.exceptions import DraymanError
from drayman.executors.celery import CeleryExecutor
from drayman.scheduler import runs as run_creation
from drayman.scheduler.loop import Scheduler
from drayman.states import RunState, TIState, TryState
from drayman.store.engine import Store
from drayman.store.schema import dag_run, task_instance, task_try

pytestmark = pytest.mark.slow

TASKS = 200
DAG_ID = "many"
RUN_ID = "chaos"
QUEUED_TIMEOUT_S = 2.0

DAG_SOURCE = f"""
from drayman import DAG, task

with DAG("{DAG_ID}", max_active_tasks={TASKS}):
    for i in range({TASKS}):

        @task(task_id=f"noop_{{i:03d}}")
        def noop() -> None:
            return None

        noop()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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

    def client(self, call: Callable[[Any], Any]) -> Any:
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=2)
        try:
            return call(client)
        finally:
            client.close()


@pytest.fixture
def throwaway_redis(tmp_path: Path) -> Iterator[Redis]:
    if shutil.which("redis-server") is None:
        message = "redis-server is not installed (Debian package redis-server)"
        if IN_CI:
            pytest.fail(f"{message} (CI=true: a missing service is a failure)")
        pytest.skip(message)
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = Redis(_free_port(), workdir)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def start_worker(database_url: str, broker: str, home: Path) -> Worker:
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DRAYMAN_DATABASE_URL": database_url,
        "DRAYMAN_BROKER_URL": broker,
        "DRAYMAN_HOME": str(home),
        "DRAYMAN_EXECUTOR": "celery",
        "DRAYMAN_HEARTBEAT_INTERVAL_S": "0.5",
    }
    output = home / "worker.out"
    with open(output, "wb") as out:
        process = subprocess.Popen(
            [*CLI, "worker", "--queues", "default", "--concurrency", "4"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    worker = Worker(process, output, env)
    worker.wait_for_line("ready.", timeout=30)
    return worker


def _queued_tries(conn: Connection) -> int:
    return conn.execute(
        select(func.count())
        .select_from(task_try)
        .join(task_instance, task_instance.c.current_try_id == task_try.c.id)
        .where(task_try.c.state == TryState.QUEUED, task_instance.c.state == TIState.QUEUED)
    ).scalar_one()


def _succeeded(conn: Connection) -> int:
    return conn.execute(
        select(func.count())
        .select_from(task_instance)
        .where(task_instance.c.state == TIState.SUCCESS)
    ).scalar_one()


def test_redis_killed_with_tries_queued_all_run_once(
    database: str,  # noqa: F811 (the fixture imported above)
    throwaway_redis: Redis,
    tmp_path: Path,
) -> None:
    settings = Settings(
        home=tmp_path / "scheduler",
        dags_folder=tmp_path / "dags",
        database_url=database,
        executor="celery",
        broker_url=throwaway_redis.url,
        parallelism=32,  # a tick may send parallelism * 8: all 200 at once
        default_pool_slots=2 * TASKS,
        queued_timeout_s=QUEUED_TIMEOUT_S,
        heartbeat_interval_s=0.5,
        heartbeat_timeout_s=10,
        scheduler_poll_s=1.0,
        remote_poll_s=0.2,
        parse_timeout_s=30,
    )
    settings.dags_folder.mkdir(parents=True)
    (settings.dags_folder / "many.py").write_text(DAG_SOURCE)
    store = Store(database)
    DagProcessor(settings, store).tick()
    scheduler = Scheduler(settings, store, CeleryExecutor(settings), executor_name="celery")
    scheduler.start()
    worker: Worker | None = None
    failed_ticks: list[str] = []

    def tick() -> None:
        """One tick, surviving what Scheduler.run survives (a broker away: ExecutorError)."""
        try:
            scheduler.tick()
        except DraymanError as exc:
            failed_ticks.append(str(exc).splitlines()[0])

    try:
        with store.begin() as conn:
            run_creation.trigger(
                conn, DAG_ID, conf=None, triggered_by="test", now=store.now(), run_id=RUN_ID
            )
        scheduler.mark_all_dirty()

        # 1. all 200 tries queued and sent, with no worker: they sit in Redis
        deadline = time.monotonic() + 20
        while True:
            tick()
            with store.read() as conn:
                if _queued_tries(conn) == TASKS:
                    break
            assert time.monotonic() < deadline, "the tries were never all queued"
            time.sleep(0.05)
        assert failed_ticks == []
        assert throwaway_redis.client(lambda r: r.llen("default")) >= TASKS

        # 2. the broker dies and comes back empty: every message is lost
        throwaway_redis.kill()
        time.sleep(QUEUED_TIMEOUT_S + 0.5)  # every try is now unclaimed for longer than that
        tick()  # housekeeping resends them into a dead broker: the tick fails, the loop lives
        assert failed_ticks and "cannot send to the broker" in failed_ticks[0], failed_ticks
        throwaway_redis.start()
        assert throwaway_redis.client(lambda r: r.dbsize()) == 0

        # 3. a worker arrives; the scheduler finds the lost tries and sends them again
        worker = start_worker(database, throwaway_redis.url, tmp_path / "worker")
        deadline = time.monotonic() + 60
        while True:
            tick()
            with store.read() as conn:
                state = conn.execute(
                    select(dag_run.c.state).where(
                        dag_run.c.dag_id == DAG_ID, dag_run.c.run_id == RUN_ID
                    )
                ).scalar_one()
                done = _succeeded(conn)
            if state == RunState.SUCCESS:
                break
            assert time.monotonic() < deadline, (
                f"{done}/{TASKS} succeeded after 60 s, run {state}; "
                f"the worker said:\n{worker.log()[-3000:]}"
            )
            time.sleep(0.1)

        # 4. each task instance ran exactly once: one try, succeeded
        with store.read() as conn:
            rows = conn.execute(
                select(task_instance.c.task_id, task_instance.c.state, task_try.c.state)
                .join(task_try, task_try.c.task_instance_id == task_instance.c.id)
                .join(dag_run, dag_run.c.id == task_instance.c.dag_run_id)
                .where(dag_run.c.dag_id == DAG_ID, dag_run.c.run_id == RUN_ID)
            ).all()
        tries: dict[str, list[str]] = {}
        for task_id, ti_state, try_state in rows:
            assert ti_state == TIState.SUCCESS, task_id
            tries.setdefault(task_id, []).append(try_state)
        assert len(tries) == TASKS
        assert {task_id: states for task_id, states in tries.items() if len(states) != 1} == {}
        assert {states[0] for states in tries.values()} == {TryState.SUCCESS}
    finally:
        scheduler.stop(grace_s=1)
        if worker is not None:
            worker.stop()
        store.dispose()
