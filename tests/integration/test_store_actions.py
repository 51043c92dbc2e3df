"""Clearing and marking task instances by hand (`store/actions.py`), on SQLite, PostgreSQL and
MariaDB: first on the store alone, then with a real scheduler rerunning what was cleared."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import Connection, Row, select

from drayman.exceptions import ConflictError, NotFoundError
from drayman.spec import DagSpec, TaskSpec, result_ref
from drayman.states import RunState, StateChange, TIState, TryState
from drayman.store import actions, runs, task_instances, tries, try_history, try_liveness
from drayman.store.engine import Store
from drayman.store.schema import task_instance, task_try
from drayman.workloads import TryOutcome, TryStarted

if TYPE_CHECKING:
    from support.harness import MakeHarness
    from support.seed import Seed

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
BUNDLE = "c" * 64


def task(task_id: str, *upstream: str, **options: Any) -> TaskSpec:
    return TaskSpec(task_id=task_id, kind="python", upstream=upstream, **options)


# a -> b -> d, a -> c -> d, and e on its own
DIAMOND = DagSpec(
    dag_id="diamond",
    fileloc="diamond.py",
    tasks={
        t.task_id: t
        for t in (
            task("a"),
            task("b", "a", retries=2),
            task("c", "a"),
            task("d", "b", "c"),
            task("e"),
        )
    },
)

MAPPED = DagSpec(
    dag_id="mapped",
    fileloc="mapped.py",
    tasks={
        t.task_id: t
        for t in (
            task("numbers"),
            task("square", "numbers", expand={"n": result_ref("numbers")}),
            task("total", "square"),
        )
    },
)


# -- building runs in the store --------------------------------------------------------------


def started_run(
    seed: Seed, store: Store, spec: DagSpec, run_id: str = "r1", *, start: bool = True
) -> int:
    with store.begin() as conn:
        seed.publish(conn, spec, bundle=BUNDLE, now=NOW)
        return seed.run(conn, spec, run_id, bundle=BUNDLE, now=NOW, start=start)


def ti(conn: Connection, run_pk: int, task_id: str, map_index: int = -1) -> Row[Any]:
    return conn.execute(
        select(task_instance).where(
            task_instance.c.dag_run_id == run_pk,
            task_instance.c.task_id == task_id,
            task_instance.c.map_index == map_index,
        )
    ).one()


def states(store: Store, run_pk: int) -> dict[str, str]:
    """Task id (with [map_index] when mapped) -> state."""
    with store.read() as conn:
        rows = conn.execute(select(task_instance).where(task_instance.c.dag_run_id == run_pk))
        return {
            r.task_id if r.map_index < 0 else f"{r.task_id}[{r.map_index}]": r.state for r in rows
        }


def run_row(store: Store, run_pk: int) -> Row[Any]:
    with store.read() as conn:
        return runs.get_run_by_id(conn, run_pk)


def start_try(conn: Connection, run_pk: int, task_id: str, map_index: int = -1) -> int:
    """Schedule, queue and start one task instance; the id of its running try."""
    row = ti(conn, run_pk, task_id, map_index)
    if row.state != TIState.SCHEDULED:
        changes = [StateChange(row.id, TIState(row.state), TIState.SCHEDULED)]
        assert task_instances.apply_changes(conn, changes, NOW) == 1, row.state
        row = ti(conn, run_pk, task_id, map_index)
    (new,) = tries.create_tries(conn, [row], log_paths=["x.log"], worker_id=None, now=NOW)
    assert tries.record_started(conn, TryStarted(new.try_id, "worker-1", 42, NOW))
    return new.try_id


def outcome(try_id: int, succeeded: bool) -> TryOutcome:
    return TryOutcome(
        try_id=try_id,
        succeeded=succeeded,
        started_at=NOW,
        ended_at=NOW + timedelta(seconds=1),
        result_json='"done"' if succeeded else None,
        error=None if succeeded else "boom",
    )


def finish(store: Store, run_pk: int, task_id: str, *, ok: bool, map_index: int = -1) -> None:
    """Run one try of a task instance to its end (failing it for good unless `ok`)."""
    with store.begin() as conn:
        try_id = start_try(conn, run_pk, task_id, map_index)
        recorded = tries.record_outcome(conn, outcome(try_id, ok), retry_delays={try_id: 0.0})
        assert recorded is not None
    if recorded.state == TIState.UP_FOR_RETRY:
        finish(store, run_pk, task_id, ok=ok, map_index=map_index)


def upstream_failed(store: Store, run_pk: int, *task_ids: str) -> None:
    with store.begin() as conn:
        changes = [
            StateChange(ti(conn, run_pk, t).id, TIState.PENDING, TIState.UPSTREAM_FAILED)
            for t in task_ids
        ]
        task_instances.apply_changes(conn, changes, NOW)


def end_run(store: Store, run_pk: int, state: RunState) -> None:
    with store.begin() as conn:
        assert runs.finish_run(conn, run_pk, state, NOW)


def failed_diamond(seed: Seed, store: Store) -> int:
    """A finished, failed run: a and c succeeded, b failed after its 3 tries, d upstream_failed,
    e succeeded."""
    pk = started_run(seed, store, DIAMOND)
    for task_id, ok in (("a", True), ("c", True), ("b", False), ("e", True)):
        finish(store, pk, task_id, ok=ok)
    upstream_failed(store, pk, "d")
    end_run(store, pk, RunState.FAILED)
    return pk


def clear(store: Store, *task_ids: str, dag_id: str = "diamond", **options: Any) -> set[str]:
    with store.begin() as conn:
        keys = actions.clear_task_instances(
            conn, dag_id, "r1", task_ids, now=LATER, by="ann@host", **options
        )
    return {k.task_id if k.map_index < 0 else f"{k.task_id}[{k.map_index}]" for k in keys}


def mark(
    store: Store, task_id: str, state: TIState, dag_id: str = "diamond", **options: Any
) -> set[str]:
    with store.begin() as conn:
        keys = actions.mark_task_instances(
            conn, dag_id, "r1", [task_id], state=state, now=LATER, by="ann@host", **options
        )
    return {k.task_id for k in keys}


# -- clearing --------------------------------------------------------------------------------


def test_a_cleared_task_keeps_its_tries_and_gets_its_retries_again(
    seed: Seed, store: Store
) -> None:
    pk = failed_diamond(seed, store)
    with store.read() as conn:
        before = ti(conn, pk, "b")
    assert (before.state, before.try_number, before.max_tries) == (TIState.FAILED, 3, 3)

    assert clear(store, "b") == {"b"}

    with store.read() as conn:
        after = ti(conn, pk, "b")
        old_tries = conn.execute(
            select(task_try.c.try_number, task_try.c.state)
            .where(task_try.c.task_instance_id == after.id)
            .order_by(task_try.c.try_number)
        ).all()
    assert after.state == TIState.PENDING
    assert after.try_number == 3, "the try numbering must continue after a clear"
    assert after.max_tries == 6, "a cleared task with retries=2 must get 3 more tries"
    assert (after.start_date, after.end_date, after.queued_at, after.result) == (None,) * 4
    assert after.current_try_id is None
    assert [tuple(t) for t in old_tries] == [(n, TryState.FAILED) for n in (1, 2, 3)]
    run = run_row(store, pk)
    assert (run.state, run.end_date) == (RunState.RUNNING, None), "the run must run again"


def test_clear_takes_downstream_upstream_and_only_failed(seed: Seed, store: Store) -> None:
    pk = failed_diamond(seed, store)
    dry = {"dry_run": True}
    assert clear(store, "a", downstream=True, **dry) == {"a", "b", "c", "d"}
    assert clear(store, "d", upstream=True, **dry) == {"a", "b", "c", "d"}
    assert clear(store, "b", downstream=True, upstream=True, **dry) == {"a", "b", "d"}
    assert clear(store, "a", downstream=True, only_failed=True, **dry) == {"b", "d"}
    assert clear(store, "c", "e", **dry) == {"c", "e"}
    assert states(store, pk)["a"] == TIState.SUCCESS, "a dry run must change nothing"
    assert run_row(store, pk).state == RunState.FAILED, "a dry run must not reopen the run"

    assert clear(store, "a", downstream=True, only_failed=True) == {"b", "d"}
    assert states(store, pk) == {
        "a": TIState.SUCCESS,
        "b": TIState.PENDING,
        "c": TIState.SUCCESS,
        "d": TIState.PENDING,
        "e": TIState.SUCCESS,
    }
    # d is PENDING already: clearing it again selects nothing
    assert clear(store, "d") == set()


def test_clear_run_clears_every_finished_task_instance(seed: Seed, store: Store) -> None:
    pk = failed_diamond(seed, store)
    with store.begin() as conn:
        keys = actions.clear_run(conn, "diamond", "r1", now=LATER)
    assert {k.task_id for k in keys} == {"a", "b", "c", "d", "e"}
    assert set(states(store, pk).values()) == {TIState.PENDING}
    assert run_row(store, pk).state == RunState.RUNNING


def test_clearing_a_running_task_fences_off_its_try(seed: Seed, store: Store) -> None:
    pk = started_run(seed, store, DIAMOND)
    finish(store, pk, "a", ok=True)
    with store.begin() as conn:
        running = start_try(conn, pk, "b")

    assert clear(store, "b") == {"b"}

    with store.begin() as conn:
        late = tries.record_outcome(conn, outcome(running, True), retry_delays={})
        refused_start = tries.record_started(conn, TryStarted(running, "worker-1", 42, NOW))
        fenced = conn.execute(select(task_try).where(task_try.c.id == running)).one()
        b = ti(conn, pk, "b")
    assert late is None, "the late outcome of a cleared try must be refused"
    assert refused_start is False, "a cleared try must not start again"
    assert b.state == TIState.PENDING and b.result is None and b.current_try_id is None
    assert fenced.state == TryState.FAILED and fenced.end_date == LATER
    assert "cleared by ann@host" in (fenced.error or "")
    assert b.max_tries == b.try_number + 3  # retries=2: three more tries


def test_clearing_a_queued_task_fences_off_its_unstarted_try(seed: Seed, store: Store) -> None:
    pk = started_run(seed, store, DIAMOND)
    with store.begin() as conn:
        row = ti(conn, pk, "a")
        task_instances.apply_changes(
            conn, [StateChange(row.id, TIState.PENDING, TIState.SCHEDULED)], NOW
        )
        (new,) = tries.create_tries(
            conn, [ti(conn, pk, "a")], log_paths=["a.log"], worker_id=None, now=NOW
        )
    assert clear(store, "a") == {"a"}
    with store.begin() as conn:
        assert tries.record_started(conn, TryStarted(new.try_id, "w", 1, NOW)) is False
        assert try_history.try_state(conn, new.try_id) == TryState.FAILED


def test_clearing_a_mapped_task_clears_its_expansion_not_its_placeholder(
    seed: Seed, store: Store
) -> None:
    pk = started_run(seed, store, MAPPED)
    finish(store, pk, "numbers", ok=True)
    with store.begin() as conn:
        task_instances.expand(conn, ti(conn, pk, "square").id, 3, NOW)
    for index, ok in ((0, True), (1, False), (2, True)):
        finish(store, pk, "square", ok=ok, map_index=index)
    upstream_failed(store, pk, "total")
    end_run(store, pk, RunState.FAILED)

    dry = {"dag_id": "mapped", "dry_run": True}
    assert clear(store, "square", **dry) == {"square[0]", "square[1]", "square[2]"}
    assert clear(store, "square", only_failed=True, **dry) == {"square[1]"}
    assert clear(store, "square", map_index=2, downstream=True, **dry) == {"square[2]", "total"}
    with pytest.raises(NotFoundError, match="map index 7"):
        clear(store, "square", map_index=7, **dry)

    assert clear(store, "numbers", downstream=True, dag_id="mapped") == {
        "numbers",
        "square[0]",
        "square[1]",
        "square[2]",
        "total",
    }
    assert states(store, pk) == {
        "numbers": TIState.PENDING,
        "square": TIState.PENDING,  # expands again: numbers may return another length
        "square[0]": TIState.REMOVED,
        "square[1]": TIState.REMOVED,
        "square[2]": TIState.REMOVED,
        "total": TIState.PENDING,
    }


def test_a_mapped_task_expands_again_to_its_new_width_keeping_its_tries(
    seed: Seed, store: Store
) -> None:
    pk = started_run(seed, store, MAPPED)
    finish(store, pk, "numbers", ok=True)
    with store.begin() as conn:
        task_instances.expand(conn, ti(conn, pk, "square").id, 3, NOW)
    for index in range(3):
        finish(store, pk, "square", ok=True, map_index=index)
    clear(store, "numbers", downstream=True, dag_id="mapped")

    with store.begin() as conn:  # numbers' rerun returned two elements, not three
        task_instances.expand(conn, ti(conn, pk, "square").id, 2, LATER)
        rows = {r: ti(conn, pk, "square", r) for r in range(3)}
    assert [rows[i].state for i in range(3)] == [
        TIState.SCHEDULED,
        TIState.SCHEDULED,
        TIState.REMOVED,
    ]
    assert (rows[0].try_number, rows[0].max_tries, rows[0].result) == (1, 2, None)

    finish(store, pk, "numbers", ok=True)
    clear(store, "numbers", downstream=True, dag_id="mapped")
    with store.begin() as conn:  # and then four
        task_instances.expand(conn, ti(conn, pk, "square").id, 4, LATER)
    assert {k: v for k, v in states(store, pk).items() if k.startswith("square[")} == {
        "square[0]": TIState.SCHEDULED,
        "square[1]": TIState.SCHEDULED,
        "square[2]": TIState.SCHEDULED,
        "square[3]": TIState.SCHEDULED,
    }


def test_a_running_element_removed_by_an_expansion_undone_has_its_try_fenced(
    seed: Seed, store: Store
) -> None:
    """Clearing only the failed ones of an input and its mapped task undoes the whole
    expansion: an element still running is REMOVED, and its try must end with it."""
    pk = started_run(seed, store, MAPPED)
    finish(store, pk, "numbers", ok=True)
    with store.begin() as conn:
        task_instances.expand(conn, ti(conn, pk, "square").id, 2, NOW)
    finish(store, pk, "square", ok=False, map_index=0)
    with store.begin() as conn:
        running = start_try(conn, pk, "square", 1)
    mark(store, "numbers", TIState.FAILED, dag_id="mapped")

    cleared = clear(store, "numbers", downstream=True, only_failed=True, dag_id="mapped")
    assert cleared == {"numbers", "square[0]"}
    with store.read() as conn:
        element = ti(conn, pk, "square", 1)
        fenced = conn.execute(select(task_try).where(task_try.c.id == running)).one()
    assert (element.state, element.current_try_id) == (TIState.REMOVED, None)
    assert fenced.state == TryState.FAILED, "a removed element's try may not run on"
    assert "cleared by ann@host" in (fenced.error or "")


def test_a_placeholder_that_never_expanded_is_cleared_to_expand_later(
    seed: Seed, store: Store
) -> None:
    pk = started_run(seed, store, MAPPED)
    finish(store, pk, "numbers", ok=False)
    upstream_failed(store, pk, "square", "total")
    assert clear(store, "numbers", downstream=True, dag_id="mapped") == {
        "numbers",
        "square",
        "total",
    }
    assert states(store, pk) == {
        "numbers": TIState.PENDING,
        "square": TIState.PENDING,
        "total": TIState.PENDING,
    }


# -- marking ---------------------------------------------------------------------------------


def test_mark_success_with_downstream_and_failed_with_upstream(seed: Seed, store: Store) -> None:
    pk = failed_diamond(seed, store)
    assert mark(store, "b", TIState.SUCCESS, downstream=True, dry_run=True) == {"b", "d"}
    assert states(store, pk)["b"] == TIState.FAILED, "a dry run must change nothing"

    assert mark(store, "b", TIState.SUCCESS, downstream=True) == {"b", "d"}
    with store.read() as conn:
        b, d = ti(conn, pk, "b"), ti(conn, pk, "d")
    assert (b.state, d.state) == (TIState.SUCCESS, TIState.SUCCESS)
    assert b.end_date == LATER and d.end_date == LATER
    assert b.try_number == 3 and b.max_tries == 3, "marking must not add tries"
    assert d.start_date == LATER, "a task marked without running gets a start date"
    run = run_row(store, pk)
    assert (run.state, run.end_date) == (RunState.RUNNING, None), "the scheduler decides again"

    # a was SUCCESS, b SUCCESS (already marked): only what changes is reported
    assert mark(store, "b", TIState.FAILED, upstream=True) == {"a", "b"}
    assert states(store, pk) == {
        "a": TIState.FAILED,
        "b": TIState.FAILED,
        "c": TIState.SUCCESS,
        "d": TIState.SUCCESS,
        "e": TIState.SUCCESS,
    }
    assert mark(store, "b", TIState.FAILED) == set()


def test_marking_a_running_task_fences_off_its_try(seed: Seed, store: Store) -> None:
    pk = started_run(seed, store, DIAMOND)
    with store.begin() as conn:
        running = start_try(conn, pk, "a")
    assert mark(store, "a", TIState.SUCCESS) == {"a"}
    with store.begin() as conn:
        late = tries.record_outcome(conn, outcome(running, False), retry_delays={running: 0.0})
        a = ti(conn, pk, "a")
        error = conn.execute(select(task_try.c.error).where(task_try.c.id == running)).scalar()
    assert late is None, "a worker's outcome after a mark must be refused"
    assert a.state == TIState.SUCCESS and a.current_try_id is None
    assert "marked success by ann@host" in (error or "")
    assert run_row(store, pk).state == RunState.RUNNING


def test_a_mark_to_another_state_is_refused(seed: Seed, store: Store) -> None:
    started_run(seed, store, DIAMOND)
    with pytest.raises(ValueError, match="success or failed"):
        mark(store, "a", TIState.SKIPPED)


# -- cancelling ------------------------------------------------------------------------------


def cancel(store: Store, task_id: str, **options: Any) -> set[str]:
    with store.begin() as conn:
        keys = actions.cancel_task_instance(
            conn, "diamond", "r1", task_id, now=LATER, by="ann@host", **options
        )
    return {k.task_id for k in keys}


def test_cancelling_a_running_task_ends_its_try_and_fails_it_without_retries(
    seed: Seed, store: Store
) -> None:
    pk = started_run(seed, store, DIAMOND)
    finish(store, pk, "a", ok=True)
    with store.begin() as conn:
        running = start_try(conn, pk, "b")  # b has retries=2 left

    with store.begin() as conn:
        assert try_liveness.ended_among(conn, [running]) == []
    assert cancel(store, "b") == {"b"}

    with store.begin() as conn:
        late = tries.record_outcome(conn, outcome(running, True), retry_delays={})
        ended = try_liveness.ended_among(conn, [running])
        b = ti(conn, pk, "b")
        fenced = conn.execute(select(task_try).where(task_try.c.id == running)).one()
    assert ended == [running], "whoever runs the try must learn that the store ended it"
    assert late is None, "the cancelled try's outcome must be refused"
    assert (b.state, b.current_try_id, b.end_date) == (TIState.FAILED, None, LATER)
    assert fenced.state == TryState.FAILED and "cancelled by ann@host" in (fenced.error or "")


def test_a_dry_cancel_changes_nothing(seed: Seed, store: Store) -> None:
    pk = started_run(seed, store, DIAMOND)
    with store.begin() as conn:
        running = start_try(conn, pk, "a")
    assert cancel(store, "a", dry_run=True) == {"a"}
    with store.begin() as conn:
        assert try_history.try_state(conn, running) == TryState.RUNNING
        assert ti(conn, pk, "a").state == TIState.RUNNING


def test_only_a_queued_or_running_task_can_be_cancelled(seed: Seed, store: Store) -> None:
    pk = started_run(seed, store, DIAMOND)
    finish(store, pk, "a", ok=True)
    with pytest.raises(ConflictError, match="'a' of run 'r1' is success, not queued or running"):
        cancel(store, "a")
    with pytest.raises(ConflictError, match="is pending"):
        cancel(store, "e")
    with pytest.raises(NotFoundError, match="no task 'z'"):
        cancel(store, "z")
    with pytest.raises(NotFoundError, match="map index 3"):
        cancel(store, "a", map_index=3)


# -- bad input -------------------------------------------------------------------------------


def test_unknown_dag_run_and_task_are_not_found(seed: Seed, store: Store) -> None:
    started_run(seed, store, DIAMOND)
    with store.begin() as conn:
        with pytest.raises(NotFoundError, match="no DAG 'nope'"):
            actions.clear_task_instances(conn, "nope", "r1", ["a"], now=LATER)
        with pytest.raises(NotFoundError, match="no run 'r9'"):
            actions.clear_run(conn, "diamond", "r9", now=LATER)
        with pytest.raises(NotFoundError, match=r"no task 'z'.*a, b, c, d, e"):
            actions.mark_task_instances(
                conn, "diamond", "r1", ["z"], state=TIState.SUCCESS, now=LATER
            )


def test_a_run_that_has_not_started_is_a_conflict(seed: Seed, store: Store) -> None:
    started_run(seed, store, DIAMOND, "r1", start=False)
    with store.begin() as conn, pytest.raises(ConflictError, match="has not started"):
        actions.clear_run(conn, "diamond", "r1", now=LATER)


# -- with the scheduler ----------------------------------------------------------------------

FLAKY = """
    from pathlib import Path

    from drayman import DAG, task

    with DAG("flaky"):

        @task
        def extract() -> int:
            return 1

        @task
        def call_api(x: int) -> int:
            if not Path("@MARKERS@/fixed").exists():
                raise RuntimeError("the API is down")
            return x + 1

        @task
        def load(y: int | None) -> int:
            return -1 if y is None else y * 10  # None: call_api was marked, not run

        load(call_api(extract()))
"""


def test_a_cleared_failed_task_is_rerun_by_the_scheduler(scheduler_harness: MakeHarness) -> None:
    h = scheduler_harness({"flaky.py": FLAKY})
    h.trigger("flaky", "r1")
    assert h.drive_runs("flaky", "r1")["r1"].state == RunState.FAILED
    assert h.states("flaky", "r1")["load"] == TIState.UPSTREAM_FAILED

    (h.markers / "fixed").touch()
    with h.store.begin() as conn:
        actions.clear_task_instances(
            conn, "flaky", "r1", ["call_api"], downstream=True, now=h.store.now()
        )
    h.scheduler.mark_all_dirty()  # what the CLI's doorbell does
    run = h.drive_runs("flaky", "r1")["r1"]

    assert run.state == RunState.SUCCESS, h.describe()
    assert run.end_date is not None
    assert [(t.try_number, t.state) for t in h.tries("flaky", "r1", "call_api")] == [
        (1, TryState.FAILED),
        (2, TryState.SUCCESS),
    ]
    assert h.tis("flaky", "r1")[("load", -1)].result == "20"
    assert len(h.tries("flaky", "r1", "extract")) == 1, "extract was not cleared"


def test_marking_a_failed_task_success_lets_its_run_succeed(
    scheduler_harness: MakeHarness,
) -> None:
    h = scheduler_harness({"flaky.py": FLAKY})
    h.trigger("flaky", "r1")
    h.drive_runs("flaky", "r1")
    with h.store.begin() as conn:
        actions.mark_task_instances(
            conn, "flaky", "r1", ["call_api"], state=TIState.SUCCESS, now=h.store.now()
        )
    h.scheduler.mark_all_dirty()
    # load is still upstream_failed (not marked): the run is failed again
    assert h.drive_runs("flaky", "r1")["r1"].state == RunState.FAILED

    with h.store.begin() as conn:
        actions.clear_task_instances(conn, "flaky", "r1", ["load"], now=h.store.now())
    h.scheduler.mark_all_dirty()
    assert h.drive_runs("flaky", "r1")["r1"].state == RunState.SUCCESS, h.describe()
    assert h.tis("flaky", "r1")[("load", -1)].result == "-1", "marked call_api has no result"
    assert len(h.tries("flaky", "r1", "call_api")) == 1, "marking runs nothing"


WIDTH_FROM_FILE = """
    from pathlib import Path

    from drayman import DAG, task

    with DAG("widths"):

        @task
        def numbers() -> list[int]:
            return list(range(int(Path("@MARKERS@/width").read_text())))

        @task
        def square(n: int) -> int:
            return n * n

        @task
        def total(values: list[int]) -> int:
            return sum(values)

        total(square.expand(n=numbers()))
"""


@pytest.mark.parametrize("widths", [(3, 2), (2, 4)], ids=["narrower", "wider"])
def test_a_mapped_task_cleared_with_its_input_reruns_at_the_new_width(
    scheduler_harness: MakeHarness, widths: tuple[int, int]
) -> None:
    first, second = widths
    h = scheduler_harness({"widths.py": WIDTH_FROM_FILE})
    (h.markers / "width").write_text(str(first))
    h.trigger("widths", "r1")
    assert h.drive_runs("widths", "r1")["r1"].state == RunState.SUCCESS, h.describe()

    (h.markers / "width").write_text(str(second))
    with h.store.begin() as conn:
        actions.clear_task_instances(
            conn, "widths", "r1", ["numbers"], downstream=True, now=h.store.now()
        )
    h.scheduler.mark_all_dirty()
    assert h.drive_runs("widths", "r1")["r1"].state == RunState.SUCCESS, h.describe()

    tis = h.tis("widths", "r1")
    assert tis[("total", -1)].result == str(sum(n * n for n in range(second))), h.describe()
    elements = {i: tis[("square", i)] for i in range(max(widths))}
    for index, element in elements.items():
        expected = TIState.SUCCESS if index < second else TIState.REMOVED
        assert element.state == expected, f"square[{index}]: {element.state}"
        assert element.try_number == (index < first) + (index < second), f"square[{index}]"


SLOW_FIRST_TRY = """
    import os
    import time
    from pathlib import Path

    from drayman import DAG, task

    with DAG("slow_first", default_args={"retries": 2}):

        @task
        def work(ctx) -> str:
            if ctx.try_number == 1:
                Path("@MARKERS@/first_pid").write_text(str(os.getpid()))
                time.sleep(60)
                Path("@MARKERS@/first_returned").touch()
                return "first"
            return "second"

        work()
"""


def pid_ends(pid: int, h: Any, within_s: float = 10.0) -> bool:
    """Whether process `pid` is gone within `within_s`, ticking the scheduler meanwhile."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        h.tick()
        time.sleep(0.05)
    return False


def running_first_try(h: Any) -> int:
    """Trigger slow_first and wait until its first try runs; that try's pid."""
    h.trigger("slow_first", "r1")
    h.drive(lambda conn: (h.markers / "first_pid").exists())
    h.drive(lambda conn: h.states("slow_first", "r1")["work"] == TIState.RUNNING)
    return int((h.markers / "first_pid").read_text())


def test_a_task_cleared_while_running_is_killed_and_runs_again(
    scheduler_harness: MakeHarness,
) -> None:
    h = scheduler_harness({"slow.py": SLOW_FIRST_TRY})
    pid = running_first_try(h)
    with h.store.begin() as conn:
        cleared = actions.clear_task_instances(
            conn, "slow_first", "r1", ["work"], now=h.store.now(), by="ops"
        )
    assert [tuple(k) for k in cleared] == [("work", -1)]
    h.scheduler.mark_all_dirty()  # what the doorbell does
    assert pid_ends(pid, h), "the cleared try's process was not killed"
    assert h.drive_runs("slow_first", "r1")["r1"].state == RunState.SUCCESS, h.describe()

    work = h.tis("slow_first", "r1")[("work", -1)]
    assert (work.state, work.result) == (TIState.SUCCESS, '"second"'), h.describe()
    first, second = h.tries("slow_first", "r1", "work")
    assert first.state == TryState.FAILED and "cleared by ops" in first.error
    assert second.state == TryState.SUCCESS
    assert not (h.markers / "first_returned").exists()


def test_a_cancelled_try_is_killed_and_its_task_fails_without_retries(
    scheduler_harness: MakeHarness,
) -> None:
    h = scheduler_harness({"slow.py": SLOW_FIRST_TRY})
    pid = running_first_try(h)
    with h.store.begin() as conn:
        cancelled = actions.cancel_task_instance(
            conn, "slow_first", "r1", "work", now=h.store.now(), by="ops"
        )
    assert [tuple(k) for k in cancelled] == [("work", -1)]
    h.scheduler.mark_all_dirty()
    assert pid_ends(pid, h), "the cancelled try's process was not killed"
    assert h.drive_runs("slow_first", "r1")["r1"].state == RunState.FAILED, h.describe()
    (only,) = h.tries("slow_first", "r1", "work")
    assert only.state == TryState.FAILED and "cancelled by ops" in only.error
    assert h.states("slow_first", "r1")["work"] == TIState.FAILED
