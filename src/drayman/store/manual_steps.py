"""The guarded steps a person's actions (`store.actions`) are made of.

Each step keeps the rules the actions' docstring sets out: task instances are found, then
locked in ascending id order (ADR 15); a QUEUED or RUNNING one has its try fenced off first
(ADR 4); every update is guarded by the state it expects and raises ConflictError, changing
nothing, when a concurrent writer got there first.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from drayman.exceptions import ConflictError, NotFoundError
from drayman.spec import DagSpec, referenced_tasks
from drayman.states import (
    RUN_MANUAL_TRANSITIONS,
    TI_ACTIVE,
    RunState,
    TIState,
    TryState,
    can_transition_manually,
)
from drayman.store import dags as dag_store
from drayman.store import task_instances as ti_store
from drayman.store.rows import DagRunRow, LockedTaskInstance, one_as
from drayman.store.schema import dag_run, task_instance, task_try
from drayman.store.tries import UNFINISHED


def started_run(conn: Connection, dag_id: str, run_id: str) -> tuple[DagRunRow, DagSpec]:
    """The run and its pinned spec.

    The run's row is not locked here: task instances are locked first and the run is updated
    last, in the scheduler's own order, so the two never wait on each other in a circle.
    """
    dag_store.get_dag(conn, dag_id)  # "no DAG" is a clearer error than "no run"
    found = conn.execute(
        select(dag_run).where(dag_run.c.dag_id == dag_id, dag_run.c.run_id == run_id)
    ).first()
    if found is None:
        raise NotFoundError(
            f"DAG {dag_id!r} has no run {run_id!r}; `drayman runs list --dag {dag_id}` lists them"
        )
    run = one_as(DagRunRow, found)
    if run.state == RunState.QUEUED:
        raise ConflictError(
            f"run {run_id!r} of DAG {dag_id!r} is queued: it has not started, so it has no task "
            "instances to clear or mark yet"
        )
    return run, dag_store.load_spec(conn, dag_id, run.bundle_version)


def locked_task_instances(
    conn: Connection,
    run_pk: int,
    task_ids: Collection[str],
    named: Collection[str],
    map_index: int | None,
) -> list[LockedTaskInstance]:
    """The run's task instances of `task_ids`, locked; `map_index` narrows the `named` ones.

    Found first, then locked by id in ascending order (ADR 15), the order every writer of
    try states takes them in: locking them through the run's index would take them in task
    id order on InnoDB, and an outcome batch waiting on one while holding another would
    deadlock with this action. A task instance created between the two reads (an expansion)
    is left out, as if the action had come first.
    """
    ids = conn.execute(
        select(task_instance.c.id).where(
            task_instance.c.dag_run_id == run_pk, task_instance.c.task_id.in_(task_ids)
        )
    ).scalars()
    rows = ti_store.lock_by_id(conn, ids)
    if map_index is None:
        return rows
    for task_id in named:
        if not any(r.task_id == task_id and r.map_index == map_index for r in rows):
            raise NotFoundError(f"task {task_id!r} has no task instance with map index {map_index}")
    return [r for r in rows if r.task_id not in named or r.map_index == map_index]


def expanding_again(spec: DagSpec, chosen: Sequence[LockedTaskInstance]) -> set[str]:
    """The mapped tasks among `chosen` whose input comes from a task cleared with them."""
    cleared = {r.task_id for r in chosen}
    return {
        task_id
        for task_id in cleared
        if spec.tasks[task_id].is_mapped and referenced_tasks(spec.tasks[task_id].expand) & cleared
    }


def unexpand(
    conn: Connection, spec: DagSpec, rows: Sequence[LockedTaskInstance], now: datetime
) -> None:
    """Undo mapped tasks' expansions: elements REMOVED, each expanded placeholder PENDING.

    Not a person's transition (`states.TI_MANUAL_TRANSITIONS`): the store's own bookkeeping
    so that the scheduler expands these tasks again, to the width of their new input.
    """
    elements = [r for r in rows if r.map_index >= 0 and r.state != TIState.REMOVED]
    for old, ids in group_ids(elements, lambda r: r.state).items():
        update_if_still(
            conn, ids, old, TIState.REMOVED, end_date=now, current_try_id=None, next_retry_at=None
        )
    placeholders = [r for r in rows if r.map_index < 0 and r.state == TIState.REMOVED]
    for row in placeholders:
        update_if_still(
            conn,
            [row.id],
            TIState.REMOVED,
            TIState.PENDING,
            max_tries=spec.tasks[row.task_id].retries + 1,
            end_date=None,
        )


def fence(conn: Connection, rows: Sequence[LockedTaskInstance], now: datetime, reason: str) -> None:
    """End the current try of each QUEUED or RUNNING task instance: its outcome won't count.

    The task instance's `current_try_id` is nulled by the caller's update, in this
    transaction; `tries.record_outcomes` accepts only an unfinished, current try.
    """
    try_ids = [r.current_try_id for r in rows if r.state in TI_ACTIVE and r.current_try_id]
    if not try_ids:
        return
    fenced = conn.execute(
        update(task_try)
        .where(task_try.c.id.in_(try_ids), task_try.c.state.in_(UNFINISHED))
        .values(
            state=TryState.FAILED,
            end_date=now,
            error=f"{reason}: this try no longer counts, and its outcome will be refused",
        )
    ).rowcount
    if fenced != len(try_ids):  # the task instances are locked: only a bug gets here
        raise ConflictError(
            f"{len(try_ids) - fenced} of {len(try_ids)} tries ended meanwhile though their task "
            "instances were locked: nothing was changed; look at the run again and retry"
        )


def group_ids(
    rows: Iterable[LockedTaskInstance], key: Callable[[LockedTaskInstance], Any]
) -> dict[Any, list[int]]:
    groups: dict[Any, list[int]] = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row.id)
    return groups


def guarded_update(
    conn: Connection, ids: Sequence[int], old: str, new: TIState, **values: Any
) -> None:
    """Move task instances from `old` to `new`; ConflictError if one was no longer `old`."""
    if not can_transition_manually(TIState(old), new):
        raise ValueError(
            f"{old} -> {new} is not a transition a person may make "
            "(see drayman.states.TI_MANUAL_TRANSITIONS)"
        )
    update_if_still(conn, ids, old, new, **values)


def update_if_still(
    conn: Connection, ids: Sequence[int], old: str, new: TIState, **values: Any
) -> None:
    """Move task instances from `old` to `new`; ConflictError if one was no longer `old`."""
    changed = conn.execute(
        update(task_instance)
        .where(task_instance.c.id.in_(ids), task_instance.c.state == old)
        .values(state=new, **values)
    ).rowcount
    if changed != len(ids):
        raise ConflictError(
            f"{len(ids) - changed} task instance(s) left state {old} meanwhile: nothing was "
            "changed; look at the run again and retry"
        )


def reopen(conn: Connection, run: DagRunRow) -> None:
    """A finished run runs again so the scheduler plans what was cleared or marked."""
    if RunState.RUNNING not in RUN_MANUAL_TRANSITIONS[RunState(run.state)]:
        return
    changed = conn.execute(
        update(dag_run)
        .where(dag_run.c.id == run.id, dag_run.c.state == run.state)
        .values(state=RunState.RUNNING, end_date=None, callback_claimed_at=None)
    ).rowcount
    if changed != 1:
        raise ConflictError(f"run {run.run_id!r} changed state meanwhile: nothing was changed")
