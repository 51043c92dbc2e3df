"""A Celery cluster to break: an in-process scheduler, `drayman worker` subprocesses, a store.

`Chaos` drives a real `Scheduler` with a `CeleryExecutor` tick by tick (as
test_celery_executor does) and starts real `drayman worker` CLI processes with the same
settings in their environment, so a test can `kill -9` one and watch what the database says.
Every process it started is gone when `close()` returns, including the pool and try
processes of a killed worker, should any of them have outlived it (they must not).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, select

from drayman import run_creation
from drayman.config import Settings
from drayman.dag_processor.processor import DagProcessor
from drayman.exceptions import DraymanError
from drayman.executors.celery import CeleryExecutor
from drayman.scheduler.loop import Scheduler
from drayman.states import RUN_FINISHED, RunState
from drayman.store.engine import Store
from drayman.store.schema import component, dag_run, task_instance, task_try
from support.worker import CLI, Worker

# what a worker must share with the scheduler, passed as DRAYMAN_<NAME>
WORKER_SETTINGS = (
    "heartbeat_interval_s",
    "heartbeat_timeout_s",
    "queued_timeout_s",
    "broker_visibility_timeout_s",
    "worker_prefetch_multiplier",
    "worker_grace_s",
)

# short timeouts: the guarantees within seconds, not minutes
FAST = {
    "heartbeat_interval_s": 1.0,
    "heartbeat_timeout_s": 3.0,
    "queued_timeout_s": 3.0,
    "scheduler_poll_s": 1.0,
    "remote_poll_s": 0.1,
    "parse_timeout_s": 30.0,
    "celery_min_in_flight": 64,  # the cap on tries queued or running: above any worker slots
}


def _proc_stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state letter, start time in ticks) of a live process, else None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[1].split()
    return int(fields[1]), fields[0], int(fields[19])


def alive(pid: int) -> bool:
    stat = _proc_stat(pid)
    return stat is not None and stat[1] not in ("Z", "X")


def descendants(pid: int) -> dict[int, int]:
    """Every live descendant of `pid`: pid -> start time (to know it again, not a reuse)."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _proc_stat(int(entry.name))) is not None:
            children.setdefault(stat[0], []).append(int(entry.name))
            starts[int(entry.name)] = stat[2]
    found: dict[int, int] = {}
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found[child] = starts[child]
        todo.extend(children.get(child, []))
    return found


def write_dags(folder: Path, files: dict[str, str], values: dict[str, str]) -> None:
    """Write DAG sources, replacing each `@NAME@` by `values[NAME]`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        code = textwrap.dedent(source).lstrip("\n")
        for key, value in values.items():
            code = code.replace(f"@{key}@", value)
        (folder / name).write_text(code)


@dataclass
class Chaos:
    """One scheduler (in this process), its store, and the workers a test starts."""

    settings: Settings
    store: Store
    scheduler: Scheduler
    root: Path
    workers: list[Worker] = field(default_factory=list)
    failed_ticks: list[str] = field(default_factory=list)
    _orphans: dict[int, int] = field(default_factory=dict)

    # -- workers -------------------------------------------------------------------------

    def start_worker(
        self,
        name: str,
        *,
        concurrency: int,
        queues: str = "default",
        wait: bool = True,
        **env: str,
    ) -> Worker:
        home = self.root / name
        home.mkdir(parents=True)
        environment = {
            **os.environ,
            "DRAYMAN_DATABASE_URL": self.settings.database_url,
            "DRAYMAN_BROKER_URL": self.settings.broker_url,
            "DRAYMAN_HOME": str(home),
            "DRAYMAN_EXECUTOR": "celery",
            **{
                f"DRAYMAN_{key.upper()}": str(getattr(self.settings, key))
                for key in WORKER_SETTINGS
            },
            **env,
        }
        output = home / "worker.out"
        with open(output, "wb") as out:
            process = subprocess.Popen(
                [*CLI, "worker", "--queues", queues, "--concurrency", str(concurrency)],
                env=environment,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        worker = Worker(process, output, environment)
        self.workers.append(worker)
        if wait:
            self.wait_ready(worker)
        return worker

    def wait_ready(
        self, worker: Worker, *, each: Callable[[Connection], None] | None = None
    ) -> float:
        """Tick until the worker consumes (Celery's own "ready." line); seconds taken. The
        scheduler keeps ticking meanwhile: its timeouts run on while a worker boots."""

        def ready(_conn: Connection) -> bool:
            if worker.process.poll() is not None:
                pytest.fail(f"the worker exited {worker.process.returncode}:\n{worker.log()}")
            return "ready." in worker.log()

        return self.drive(ready, 60, each=each, what=f"worker {worker.process.pid} ready")

    def kill_worker(self, worker: Worker) -> None:
        """`kill -9` the worker's main process, and nothing else: its pool and try processes
        must die of that by themselves. Any that do not are killed in `close()`."""
        self._orphans.update(descendants(worker.process.pid))
        os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.wait(timeout=10)

    def component(self, worker: Worker) -> Any:
        """The worker's component row (registered by the process at start)."""
        with self.store.read() as conn:
            return conn.execute(
                select(component).where(
                    component.c.kind == "worker", component.c.pid == worker.process.pid
                )
            ).one()

    # -- driving -------------------------------------------------------------------------

    def tick(self) -> None:
        """One tick, surviving what `Scheduler.run` survives (a broker away: ExecutorError)."""
        try:
            self.scheduler.tick()
        except DraymanError as exc:
            self.failed_ticks.append(str(exc).splitlines()[0])

    def trigger(self, dag_id: str, run_id: str) -> None:
        with self.store.begin() as conn:
            run_creation.trigger(
                conn, dag_id, conf=None, triggered_by="test", now=self.store.now(), run_id=run_id
            )
        self.scheduler.mark_all_dirty()

    def drive(
        self,
        until: Callable[[Connection], bool],
        timeout: float,
        *,
        each: Callable[[Connection], None] | None = None,
        what: str = "the condition",
    ) -> float:
        """Tick until `until(conn)` holds, checking `each(conn)` on every round; seconds taken."""
        started = time.monotonic()
        while True:
            self.tick()
            with self.store.read() as conn:
                if each is not None:
                    each(conn)
                if until(conn):
                    return time.monotonic() - started
            if time.monotonic() - started > timeout:
                logs = "\n".join(
                    f"--- worker {w.process.pid}:\n{w.log()[-2000:]}" for w in self.workers
                )
                pytest.fail(f"{what} not reached after {timeout:g} s\n{self.describe()}\n{logs}")
            time.sleep(0.05)

    def run_finished(self, dag_id: str, run_id: str) -> Callable[[Connection], bool]:
        def finished(conn: Connection) -> bool:
            state = conn.execute(
                select(dag_run.c.state).where(
                    dag_run.c.dag_id == dag_id, dag_run.c.run_id == run_id
                )
            ).scalar_one_or_none()
            return state is not None and RunState(state) in RUN_FINISHED

        return finished

    def run_state(self, dag_id: str, run_id: str) -> str:
        with self.store.read() as conn:
            return str(
                conn.execute(
                    select(dag_run.c.state).where(
                        dag_run.c.dag_id == dag_id, dag_run.c.run_id == run_id
                    )
                ).scalar_one()
            )

    # -- reading the store ---------------------------------------------------------------

    def tries(self, conn: Connection | None = None) -> dict[str, list[Any]]:
        """Every try of every task instance, by task id, in try order."""
        if conn is None:
            with self.store.read() as conn:
                return self.tries(conn)
        rows = conn.execute(
            select(task_instance.c.task_id, task_instance.c.state.label("ti_state"), task_try)
            .join(task_try, task_try.c.task_instance_id == task_instance.c.id)
            .order_by(task_try.c.id)
        ).all()
        found: dict[str, list[Any]] = {}
        for row in rows:
            found.setdefault(row.task_id, []).append(row)
        return found

    def describe(self) -> str:
        lines = []
        for task_id, tries in sorted(self.tries().items()):
            for t in tries:
                lines.append(
                    f"{task_id} try {t.try_number}: {t.state} worker={t.worker_id} pid={t.pid}"
                    f" signal={t.signal} {t.start_date}..{t.end_date} {t.error or ''}"
                )
        return "\n".join(lines) or "(no tries)"

    # -- the end -------------------------------------------------------------------------

    def close(self) -> None:
        self.scheduler.stop(grace_s=1)
        for worker in self.workers:
            if worker.process.poll() is None:
                self._orphans.update(descendants(worker.process.pid))
                worker.process.send_signal(signal.SIGKILL)
                worker.process.wait(timeout=10)
        for pid, start in self._orphans.items():
            stat = _proc_stat(pid)
            if stat is not None and stat[2] == start:  # still the very process we started
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.store.dispose()

    def survivors(self) -> list[int]:
        """Processes of killed workers that are still alive (there should be none)."""
        return [
            pid
            for pid, start in self._orphans.items()
            if (stat := _proc_stat(pid)) is not None and stat[2] == start and alive(pid)
        ]


def chaos_fixture(dags: dict[str, str], **overrides: Any) -> Any:
    """A pytest fixture `chaos`: `start_chaos` with `dags` on the parametrized database and a
    throwaway Redis (the `chaos_database` and `throwaway_redis` fixtures of
    tests/integration/conftest.py), closed after the test."""

    @pytest.fixture
    def chaos(chaos_database: str, throwaway_redis: Any, tmp_path: Path) -> Iterator[Chaos]:
        cluster = start_chaos(chaos_database, throwaway_redis.url, tmp_path, dags, **overrides)
        yield cluster
        cluster.close()

    return chaos


def start_chaos(
    database_url: str,
    broker_url: str,
    root: Path,
    dags: dict[str, str],
    values: dict[str, str] | None = None,
    **overrides: Any,
) -> Chaos:
    """Publish `dags`, start a scheduler on `database_url` and `broker_url`; no workers yet."""
    settings = Settings(
        home=root / "scheduler",
        dags_folder=root / "dags",
        database_url=database_url,
        executor="celery",
        broker_url=broker_url,
        **{**FAST, **overrides},
    )
    write_dags(settings.dags_folder, dags, values or {})
    store = Store(database_url)
    processor = DagProcessor(settings, store)
    assert processor.tick() is not None, f"the DAGs were not published: {processor.problem}"
    scheduler = Scheduler(settings, store, CeleryExecutor(settings), executor_name="celery")
    scheduler.start()
    return Chaos(settings, store, scheduler, root)
