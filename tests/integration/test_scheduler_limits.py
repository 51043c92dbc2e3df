"""Limits the scheduler honours on every tick: max_active_runs, pools, max_active_tasks, priority.

Each limit is checked after every tick, on SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select

from drayman.scheduler.loop import TickReport
from drayman.states import RunState, TIState
from drayman.store import pools
from drayman.store import task_instances as ti_store
from drayman.store.schema import dag_run

if TYPE_CHECKING:
    from support.harness import Harness, MakeHarness

SERIAL = """
    import time
    from drayman import DAG, task

    with DAG("serial", max_active_runs=1):

        @task
        def step():
            time.sleep(0.05)
            return 1

        step() >> step()
"""


def test_max_active_runs_starts_one_run_at_a_time_in_order(
    scheduler_harness: MakeHarness,
) -> None:
    h = scheduler_harness({"serial.py": SERIAL})
    for run_id in ("r1", "r2", "r3"):
        h.trigger("serial", run_id)
    seen: list[int] = []

    def at_most_one_running(conn: Connection, _report: TickReport) -> None:
        running = conn.execute(
            select(func.count()).where(
                dag_run.c.dag_id == "serial", dag_run.c.state == RunState.RUNNING
            )
        ).scalar_one()
        assert running <= 1, f"{running} runs of a max_active_runs=1 DAG are running"
        seen.append(running)

    runs = h.drive_runs("serial", "r1", "r2", "r3", each_tick=at_most_one_running)
    assert [runs[r].state for r in ("r1", "r2", "r3")] == [RunState.SUCCESS] * 3
    assert max(seen) == 1
    # in the order they were triggered, each after the previous one ended
    assert runs["r1"].end_date <= runs["r2"].start_date
    assert runs["r2"].end_date <= runs["r3"].start_date


NARROW = """
    import time
    from drayman import DAG, task

    with DAG("narrow"):

        @task(pool="narrow")
        def load(part: int):
            time.sleep(0.1)
            return part

        for part in range(4):
            load(part)
"""


def _tries_never_overlap(h: Harness, dag_id: str, run_id: str) -> None:
    tries = sorted(
        (t for task_id, _ in h.tis(dag_id, run_id) for t in h.tries(dag_id, run_id, task_id)),
        key=lambda t: t.start_date,
    )
    for before, after in itertools.pairwise(tries):
        assert before.end_date <= after.start_date, (before, after)


def test_a_pool_of_one_slot_runs_its_tasks_one_at_a_time(
    scheduler_harness: MakeHarness,
) -> None:
    h = scheduler_harness({"narrow.py": NARROW})
    with h.store.begin() as conn:
        pools.set_pool(conn, "narrow", 1, "one connection to the legacy warehouse")
    h.trigger("narrow", "r1")
    seen: list[int] = []

    def pool_never_overfull(conn: Connection, _report: TickReport) -> None:
        used = ti_store.pool_usage(conn).get("narrow", 0)
        assert used <= 1, f"pool 'narrow' (1 slot) has {used} queued or running tasks"
        seen.append(used)

    run = h.drive_runs("narrow", "r1", each_tick=pool_never_overfull)["r1"]
    assert run.state == RunState.SUCCESS
    assert set(h.states("narrow", "r1").values()) == {TIState.SUCCESS}
    assert max(seen) == 1
    _tries_never_overlap(h, "narrow", "r1")


WIDE = """
    import time
    from drayman import DAG, task

    with DAG("wide", max_active_tasks=2):

        @task
        def part(n: int):
            time.sleep(0.2)
            return n

        for n in range(5):
            part(n)
"""


def test_max_active_tasks_caps_a_dags_queued_and_running_tasks(
    scheduler_harness: MakeHarness,
) -> None:
    h = scheduler_harness({"wide.py": WIDE})
    h.trigger("wide", "r1")
    seen: list[int] = []

    def at_most_two_active(conn: Connection, _report: TickReport) -> None:
        active = ti_store.active_per_dag(conn).get("wide", 0)
        assert active <= 2, f"{active} tasks of a max_active_tasks=2 DAG are queued or running"
        seen.append(active)

    run = h.drive_runs("wide", "r1", each_tick=at_most_two_active)["r1"]
    assert run.state == RunState.SUCCESS
    assert max(seen) == 2  # the limit, not less: parallelism (4) allowed more


PRIORITIES = """
    from drayman import DAG, task

    with DAG("ranked"):

        @task(priority=1)
        def low():
            return "low"

        @task(priority=10)
        def high():
            return "high"

        @task(priority=5)
        def mid():
            return "mid"

        low(), high(), mid()
"""


def test_the_highest_priority_task_is_queued_first(scheduler_harness: MakeHarness) -> None:
    h = scheduler_harness({"ranked.py": PRIORITIES}, parallelism=1)
    h.trigger("ranked", "r1")
    first_queued: list[Any] = []

    def one_at_a_time(conn: Connection, report: TickReport) -> None:
        assert report.queued <= 1
        assert ti_store.active_per_dag(conn).get("ranked", 0) <= 1
        if report.queued and not first_queued:
            first_queued.extend(
                task_id
                for task_id, state in h.states("ranked", "r1").items()
                if state in (TIState.QUEUED, TIState.RUNNING)
            )

    assert h.drive_runs("ranked", "r1", each_tick=one_at_a_time)["r1"].state == RunState.SUCCESS
    assert first_queued == ["high"]
    tries = {task_id: h.tries("ranked", "r1", task_id)[0] for task_id in ("low", "mid", "high")}
    order = sorted(tries, key=lambda task_id: tries[task_id].id)
    assert order == ["high", "mid", "low"]
