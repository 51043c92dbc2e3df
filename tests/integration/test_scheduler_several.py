"""Several schedulers on one PostgreSQL or MariaDB database share the work through row locks
(FOR UPDATE SKIP LOCKED) and guarded updates: no run is created twice, no task instance is
queued twice, and everything finishes. Both loops run at once, in threads, on their own
connections pools and their own local executors."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import func, select

from drayman.executors.local import LocalExecutor
from drayman.scheduler.loop import Scheduler
from drayman.states import RunState, TIState
from drayman.store.engine import Store
from drayman.store.schema import dag_run, task_instance, task_try
from support.waiting import wait_until

if TYPE_CHECKING:
    from support.harness import Harness, MakeHarness

START = (datetime.now(UTC) - timedelta(hours=6)).replace(minute=0, second=0, microsecond=0)

WIDE = """
    from drayman import DAG, task

    with DAG("wide", max_active_tasks=64):

        @task
        def noop(i):
            return i

        @task
        def total(values):
            return sum(values)

        total([noop(i) for i in range(30)])
"""

CATCHING_UP = f"""
    from drayman import DAG, task

    # end_date: exactly 6 intervals, even when the test runs past the next hour
    with DAG("catching_up", schedule="@hourly", start_date="{START.isoformat()}",
             end_date="{(START + timedelta(hours=5)).isoformat()}",
             catchup=True, max_active_runs=32):

        @task
        def hour(ctx):
            return ctx.logical_date.isoformat()

        hour()
"""


@contextmanager
def loops(*schedulers: Scheduler) -> Iterator[None]:
    stop = threading.Event()
    threads = [threading.Thread(target=s.run, args=(stop,), daemon=True) for s in schedulers]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for scheduler in schedulers:
            scheduler.wake()
        for thread in threads:
            thread.join(timeout=15)


def wait_until_finished(store: Store, expected_runs: int, within_s: float) -> None:
    def finished() -> int:
        with store.read() as conn:
            return int(
                conn.execute(
                    select(func.count()).where(
                        dag_run.c.state.in_([RunState.SUCCESS, RunState.FAILED])
                    )
                ).scalar_one()
            )

    wait_until(
        lambda: finished() >= expected_runs,
        within_s,
        f"{expected_runs} runs to finish",
        last=lambda: f"{finished()} finished",
    )


@contextmanager
def second_scheduler(h: Harness) -> Iterator[Scheduler]:
    """Another scheduler on its own connection pool, as another process would have."""
    store = Store(h.store.url)
    scheduler = Scheduler(h.settings, store, LocalExecutor(h.settings))
    scheduler.start()
    try:
        yield scheduler
    finally:
        scheduler.stop(grace_s=5)
        store.dispose()


@pytest.mark.slow
def test_two_schedulers_share_runs_without_doing_anything_twice(
    scheduler_harness: MakeHarness, store: Store
) -> None:
    if store.dialect == "sqlite":
        pytest.skip("SQLite allows one scheduler (a second refuses to start)")
    h = scheduler_harness({"wide.py": WIDE, "catching_up.py": CATCHING_UP})
    with second_scheduler(h) as other:
        for index in range(4):
            h.trigger("wide", run_id=f"w{index}")
        other.mark_all_dirty()
        with loops(h.scheduler, other):
            wait_until_finished(store, expected_runs=4 + 6, within_s=90)

    with store.read() as conn:
        runs = conn.execute(select(dag_run.c.dag_id, dag_run.c.run_id, dag_run.c.state)).all()
        tries_per_ti = conn.execute(
            select(task_instance.c.id, task_instance.c.state, func.count(task_try.c.id))
            .join(task_try, task_try.c.task_instance_id == task_instance.c.id)
            .group_by(task_instance.c.id, task_instance.c.state)
        ).all()
    catching_up = [r for r in runs if r.dag_id == "catching_up"]
    assert len(catching_up) == len({r.run_id for r in catching_up}) == 6, catching_up
    assert {r.state for r in runs} == {RunState.SUCCESS}, runs
    assert len(tries_per_ti) == 4 * 31 + 6
    assert {(state, count) for _, state, count in tries_per_ti} == {(TIState.SUCCESS, 1)}
