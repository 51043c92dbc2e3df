"""A drayman cluster of real processes for chaos tests: `drayman scheduler` and `drayman worker`
subprocesses on one database and one Redis, which a test can SIGTERM, kill -9 and restart.

Everything the processes share comes through the environment, as on real hosts: the
database URL, the broker URL, the DAG folder and the short timeouts. Each process has its
own DRAYMAN_HOME and its output in a file there, shown when an assertion fails.

Tasks of the chaos DAGs append one line per try to a marker file (`MARKER_LINE`): the test
reads it to show every task ran exactly once, whatever the store says.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from drayman import run_creation
from drayman.config import Settings
from drayman.dag_processor.processor import DagProcessor
from drayman.states import RUN_FINISHED, RunState, TryState
from drayman.store import migrate
from drayman.store.engine import Store
from drayman.store.schema import dag_run, task_instance, task_try

CLI = [sys.executable, "-c", "from drayman.cli.main import main; main()"]
# what a chaos task writes, one line per try: run id, task id, map index, try number
MARKER_LINE = "{ctx.run_id} {ctx.task_id} {ctx.map_index} {ctx.try_number}"


@dataclass
class Process:
    """One `drayman scheduler` or `drayman worker` subprocess, restartable."""

    name: str
    argv: list[str]
    env: dict[str, str]
    home: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def output(self) -> Path:
        return self.home / f"{self.name}.out"

    def start(self, ready: str, timeout: float = 60.0) -> None:
        """Start it (again) and wait until its output shows `ready`."""
        assert not self.alive(), f"{self.name} is already running"
        self.home.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        with open(self.output, "ab") as out:
            out.write(f"\n==== start {self.starts} ====\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                [*CLI, *self.argv],
                env={**self.env, "DRAYMAN_HOME": str(self.home)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        offset = len(self.log())
        deadline = time.monotonic() + timeout
        while ready not in self.log()[offset:]:
            if time.monotonic() > deadline or not self.alive():
                pytest.fail(f"{self.name} never logged {ready!r}; its output:\n{self.tail()}")
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """kill -9: no shutdown, nothing written to the store."""
        if self.process is not None and self.alive():
            self.process.kill()
            self.process.wait(timeout=30)

    def terminate(self, timeout: float) -> int:
        """SIGTERM and wait for the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.name} ignored SIGTERM for {timeout:g} s:\n{self.tail()}")

    def log(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    def tail(self, chars: int = 4000) -> str:
        return self.log()[-chars:]


@dataclass
class Cluster:
    """Schedulers and workers on one database and one broker, and what the test reads."""

    root: Path
    store: Store
    env: dict[str, str]
    markers: Path
    processes: list[Process] = field(default_factory=list)

    @property
    def schedulers(self) -> list[Process]:
        return [p for p in self.processes if p.argv[0] == "scheduler"]

    @property
    def workers(self) -> list[Process]:
        return [p for p in self.processes if p.argv[0] == "worker"]

    def add_scheduler(self) -> Process:
        index = len(self.schedulers)
        process = Process(
            f"scheduler{index}", ["scheduler", "--grace", "10"], self.env, self.root / f"s{index}"
        )
        self.processes.append(process)
        process.start(SCHEDULER_READY)
        return process

    def add_worker(self, concurrency: int) -> Process:
        index = len(self.workers)
        argv = ["worker", "--queues", "default", "--concurrency", str(concurrency)]
        process = Process(f"worker{index}", argv, self.env, self.root / f"w{index}")
        self.processes.append(process)
        process.start(WORKER_READY)
        return process

    def trigger(self, dag_id: str, run_id: str) -> None:
        """A manual run, as `drayman dags trigger` makes it (the schedulers poll for it)."""
        with self.store.begin() as conn:
            run_creation.trigger(
                conn, dag_id, conf=None, triggered_by="test", now=self.store.now(), run_id=run_id
            )

    def finished_runs(self) -> int:
        with self.store.read() as conn:
            return int(
                conn.execute(
                    select(func.count()).where(dag_run.c.state.in_([str(s) for s in RUN_FINISHED]))
                ).scalar_one()
            )

    def marker_lines(self) -> Counter[str]:
        """How often each (run, task, map index) line was written, try number left out."""
        if not self.markers.exists():
            return Counter()
        lines = self.markers.read_text().splitlines()
        return Counter(line.rsplit(" ", 1)[0] for line in lines if line)

    def describe(self) -> str:
        """The processes' output tails, for a failure message."""
        return "\n".join(f"--- {p.name} ---\n{p.tail(2500)}" for p in self.processes)

    def wait_finished(self, runs: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while (done := self.finished_runs()) < runs:
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{done}/{runs} runs finished after {timeout:g} s\n{self.describe()}\n"
                    f"runs: {runs_by_state(self.store)}; unfinished tries: {unfinished(self.store)}"
                )
            time.sleep(0.2)


SCHEDULER_READY = "scheduler.started"
WORKER_READY = "ready."  # Celery's own line: consuming from its queues


def chaos_dag(dag_id: str, markers: Path, body: str) -> str:
    """A DAG file whose tasks call `mark(ctx)` to leave their marker line."""
    head = f"""
        import os, time
        from drayman import DAG, task

        MARKERS = {str(markers)!r}

        def mark(ctx):
            line = f"{MARKER_LINE}\\n"
            fd = os.open(MARKERS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
    """
    return textwrap.dedent(head) + textwrap.dedent(body).replace("@DAG_ID@", dag_id)


def cluster_env(database_url: str, broker_url: str, dags: Path, **settings: Any) -> dict[str, str]:
    env = {
        **os.environ,
        "DRAYMAN_EXECUTOR": "celery",
        "DRAYMAN_DATABASE_URL": database_url,
        "DRAYMAN_BROKER_URL": broker_url,
        "DRAYMAN_DAGS_FOLDER": str(dags),
    }
    for key, value in settings.items():
        env[f"DRAYMAN_{key.upper()}"] = str(value)
    return env


@contextmanager
def cluster(
    root: Path, database_url: str, broker_url: str, dags: dict[str, str], **settings: Any
) -> Iterator[Cluster]:
    """Migrate the database, publish the DAG files, and yield a cluster with no process yet.

    `dags` maps file names to `chaos_dag` sources. Every process still alive when the block
    ends is killed: a failing test leaves nothing running.
    """
    folder, markers = root / "dags", root / "markers.txt"
    folder.mkdir(parents=True)
    for name, source in dags.items():
        (folder / name).write_text(source)
    store = Store(database_url)
    migrate.upgrade(store)
    processor = DagProcessor(Settings(dags_folder=folder, database_url=database_url), store)
    assert processor.tick() is not None, f"the DAGs were not published: {processor.problem}"
    made = Cluster(root, store, cluster_env(database_url, broker_url, folder, **settings), markers)
    try:
        yield made
    finally:
        for process in made.processes:
            process.kill()
        store.dispose()


def runs_by_state(store: Store) -> dict[str, int]:
    with store.read() as conn:
        rows = conn.execute(select(dag_run.c.state, func.count()).group_by(dag_run.c.state)).all()
    return {str(state): int(count) for state, count in rows}


def unfinished(store: Store) -> list[tuple[str, str, int, str]]:
    """(run id, task id, try number, state) of every try not finished, for failure messages."""
    return [
        (key[0], key[1], t.try_number, t.state)
        for key, ts in tries_per_task(store).items()
        for t in ts
        if t.end_date is None
    ]


def tries_per_task(store: Store) -> dict[tuple[str, str, int], list[Any]]:
    """Every try, by (run id, task id, map index), oldest first."""
    with store.read() as conn:
        rows = conn.execute(
            select(
                dag_run.c.run_id,
                task_instance.c.task_id,
                task_instance.c.map_index,
                task_instance.c.state.label("ti_state"),
                task_try,
            )
            .join(task_instance, task_instance.c.dag_run_id == dag_run.c.id)
            .join(task_try, task_try.c.task_instance_id == task_instance.c.id)
            .order_by(task_try.c.id)
        ).all()
    found: dict[tuple[str, str, int], list[Any]] = {}
    for row in rows:
        found.setdefault((row.run_id, row.task_id, row.map_index), []).append(row)
    return found


def assert_each_task_ran_once(c: Cluster, expected_tasks: int) -> None:
    """Every task instance succeeded with exactly one try, and left exactly one marker line."""
    tries = tries_per_task(c.store)
    assert runs_by_state(c.store) == {str(RunState.SUCCESS): len({k[0] for k in tries})}, (
        f"not every run succeeded: {runs_by_state(c.store)}"
    )
    assert len(tries) == expected_tasks, (
        f"{len(tries)} task instances have tries, not {expected_tasks}"
    )
    several = {
        key: [(t.try_number, t.state, t.error) for t in ts]
        for key, ts in tries.items()
        if len(ts) != 1
    }
    assert several == {}, (
        f"task instances with more than one try (a failure, a loss or a double): {several}"
    )
    not_success = {
        key: (ts[0].state, ts[0].error)
        for key, ts in tries.items()
        if ts[0].state != TryState.SUCCESS
    }
    assert not_success == {}, f"tries that did not succeed: {not_success}"
    lines = c.marker_lines()
    expected = {" ".join(map(str, key)) for key in tries}
    doubled = {line: n for line, n in lines.items() if n != 1}
    assert doubled == {}, f"tasks that ran more than once (marker lines): {doubled}"
    assert set(lines) == expected, (
        f"tasks that never ran: {sorted(expected - set(lines))[:10]}; "
        f"lines of no task: {sorted(set(lines) - expected)[:10]}"
    )
