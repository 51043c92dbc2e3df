"""A real scheduler on a real database, driven tick by tick: the `Harness` that
tests/integration/conftest.py's `scheduler_harness` fixture builds (its docstring says how).

In DAG sources, `@MARKERS@` is replaced by a directory the test can look into: tasks and
callbacks leave marker files there.
"""

from __future__ import annotations

import select
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import pytest
from sqlalchemy import Connection, Row
from sqlalchemy import select as sql_select

from drayman import run_creation
from drayman.config import Settings
from drayman.dag_processor.processor import DagProcessor
from drayman.executors.local import LocalExecutor
from drayman.scheduler.loop import Scheduler, TickReport
from drayman.states import RUN_FINISHED, RunState
from drayman.store.engine import Store
from drayman.store.schema import dag_run, task_instance, task_try

Until = Callable[[Connection], bool]
EachTick = Callable[[Connection, TickReport], None]


@dataclass
class Harness:
    """One started scheduler and what a test needs around it."""

    settings: Settings
    store: Store
    processor: DagProcessor
    executor: LocalExecutor
    scheduler: Scheduler
    markers: Path
    started: list[Scheduler]  # stopped when the test ends

    def crash_and_restart(self) -> None:
        """Replace the scheduler by a new one, as if its process had been killed.

        The old one's worker processes die with their tries, and nothing of it is written to
        the store: its components stay "running" until their heartbeats go stale.
        """
        self.started.remove(self.scheduler)
        self.executor.stop(grace_s=0)
        self.executor = LocalExecutor(self.settings)
        self.scheduler = Scheduler(self.settings, self.store, self.executor)
        self.scheduler.start()
        self.started.append(self.scheduler)

    # -- DAG files -----------------------------------------------------------------------

    def write_dag(self, name: str, source: str) -> None:
        """Write (or overwrite) one DAG file; `publish()` makes it a new bundle version."""
        write_dag(self.settings.dags_folder, name, source, self.markers)

    def publish(self) -> str | None:
        return self.processor.tick()

    # -- driving -------------------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> TickReport:
        return self.scheduler.tick(now)

    def drive(
        self,
        until: Until,
        timeout: float = 10.0,
        *,
        each_tick: EachTick | None = None,
        now: datetime | None = None,
    ) -> list[TickReport]:
        """Tick until `until(conn)` holds; `each_tick(conn, report)` checks every tick.

        Between ticks that made no progress it waits up to 0.1 s for the executor's fd. Each
        tick is at `now` when given (a fixed clock for timetables), else at the real time.
        """
        fd = self.executor.fileno()
        assert fd is not None, "the executor is not started"
        deadline = time.monotonic() + timeout
        reports: list[TickReport] = []
        while True:
            report = self.scheduler.tick(now)
            reports.append(report)
            with self.store.read() as conn:
                if each_tick is not None:
                    each_tick(conn, report)
                if until(conn):
                    return reports
            if time.monotonic() > deadline:
                pytest.fail(
                    f"condition not met after {timeout:g} s ({len(reports)} ticks);"
                    f" the store holds:\n{self.describe()}"
                )
            if not report.progressed:
                select.select([fd], [], [], 0.1)

    def drive_runs(
        self,
        dag_id: str,
        *run_ids: str,
        timeout: float = 10.0,
        each_tick: EachTick | None = None,
        now: datetime | None = None,
    ) -> dict[str, Row[Any]]:
        """Drive until these runs are finished; their rows by run id."""
        self.drive(
            lambda conn: runs_finished(conn, dag_id, run_ids), timeout, each_tick=each_tick, now=now
        )
        return {run_id: self.run(dag_id, run_id) for run_id in run_ids}

    @staticmethod
    def finished(conn: Connection, dag_id: str, *run_ids: str) -> bool:
        """Whether these runs exist and are all finished (for `drive(until=...)`)."""
        return runs_finished(conn, dag_id, run_ids)

    # -- making runs ---------------------------------------------------------------------

    def trigger(self, dag_id: str, run_id: str | None = None, **conf: Any) -> str:
        now = self.store.now()
        with self.store.begin() as conn:
            made = run_creation.trigger(
                conn, dag_id, conf=conf or None, triggered_by="test", now=now, run_id=run_id
            )
        self.scheduler.mark_all_dirty()
        return made

    # -- reading the store ---------------------------------------------------------------

    def run(self, dag_id: str, run_id: str) -> Row[Any]:
        with self.store.read() as conn:
            return conn.execute(
                sql_select(dag_run).where(dag_run.c.dag_id == dag_id, dag_run.c.run_id == run_id)
            ).one()

    def runs(self, dag_id: str) -> list[Row[Any]]:
        with self.store.read() as conn:
            return list(
                conn.execute(
                    sql_select(dag_run)
                    .where(dag_run.c.dag_id == dag_id)
                    .order_by(dag_run.c.logical_date, dag_run.c.id)
                )
            )

    def tis(self, dag_id: str, run_id: str) -> dict[tuple[str, int], Row[Any]]:
        """Task instances of one run by (task_id, map_index)."""
        run = self.run(dag_id, run_id)
        with self.store.read() as conn:
            rows = conn.execute(
                sql_select(task_instance).where(task_instance.c.dag_run_id == run.id)
            )
            return {(row.task_id, row.map_index): row for row in rows}

    def states(self, dag_id: str, run_id: str) -> dict[str, str]:
        """Task id (with [map_index] when mapped) -> state."""
        return {
            task_id if index < 0 else f"{task_id}[{index}]": row.state
            for (task_id, index), row in self.tis(dag_id, run_id).items()
        }

    def tries(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[Row[Any]]:
        ti = self.tis(dag_id, run_id)[(task_id, map_index)]
        with self.store.read() as conn:
            return list(
                conn.execute(
                    sql_select(task_try)
                    .where(task_try.c.task_instance_id == ti.id)
                    .order_by(task_try.c.try_number)
                )
            )

    def describe(self) -> str:
        """Every run, task instance and try, for a failure message."""
        lines = []
        with self.store.read() as conn:
            for run in conn.execute(sql_select(dag_run).order_by(dag_run.c.id)).all():
                lines.append(f"run {run.dag_id}/{run.run_id}: {run.state}")
                tis = conn.execute(
                    sql_select(task_instance)
                    .where(task_instance.c.dag_run_id == run.id)
                    .order_by(task_instance.c.id)
                ).all()
                for ti in tis:
                    lines.append(
                        f"  ti {ti.task_id}[{ti.map_index}]: {ti.state}"
                        f" (try {ti.try_number}/{ti.max_tries})"
                    )
                    tries = conn.execute(
                        sql_select(task_try)
                        .where(task_try.c.task_instance_id == ti.id)
                        .order_by(task_try.c.try_number)
                    ).all()
                    for t in tries:
                        lines.append(f"    try {t.try_number}: {t.state} {t.error or ''}")
        return "\n".join(lines) or "(no runs)"


def runs_finished(conn: Connection, dag_id: str, run_ids: tuple[str, ...] | list[str]) -> bool:
    states = conn.execute(
        sql_select(dag_run.c.state).where(
            dag_run.c.dag_id == dag_id, dag_run.c.run_id.in_(list(run_ids))
        )
    ).scalars()
    found = [RunState(state) for state in states]
    return len(found) == len(run_ids) and all(state in RUN_FINISHED for state in found)


def write_dag(folder: Path, name: str, source: str, markers: Path) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    text = textwrap.dedent(source).lstrip("\n").replace("@MARKERS@", str(markers))
    path.write_text(text)


class MakeHarness(Protocol):
    def __call__(self, files: dict[str, str], /, **settings: Any) -> Harness: ...
