"""Task instances: dependency-driven state changes, mapping, slot accounting, results."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, update

from drayman.states import TI_ACTIVE, StateChange, TIState, can_transition
from drayman.store.rows import LockedTaskInstance, TaskInstanceRow, all_as, one_as
from drayman.store.schema import dag_run, task_instance


@dataclass(frozen=True, slots=True)
class TaskInstanceProgress:
    """What the scheduler reads of a task instance to move its run on."""

    id: int
    dag_run_id: int
    task_id: str
    map_index: int
    state: str
    try_number: int
    max_tries: int
    next_retry_at: datetime | None


def of_runs(conn: Connection, run_ids: Sequence[int]) -> list[TaskInstanceProgress]:
    """Every task instance of these runs."""
    if not run_ids:
        return []
    return all_as(
        TaskInstanceProgress,
        conn.execute(
            select(
                task_instance.c.id,
                task_instance.c.dag_run_id,
                task_instance.c.task_id,
                task_instance.c.map_index,
                task_instance.c.state,
                task_instance.c.try_number,
                task_instance.c.max_tries,
                task_instance.c.next_retry_at,
            ).where(task_instance.c.dag_run_id.in_(list(run_ids)))
        ),
    )


def apply_changes(conn: Connection, changes: Sequence[StateChange], now: datetime) -> int:
    """Apply guarded state changes in one statement per (old, new) pair. Returns rows changed.

    A change that `states.TI_TRANSITIONS` does not allow is a bug in the caller: ValueError.
    Several task instances are locked first, in ascending id order (ADR 15): the pairs'
    statements would take them in no particular order, and a person's clear of the same run,
    taking them in order, could wait on this transaction while it waits on the clear.
    """
    by_pair: dict[tuple[TIState, TIState], list[int]] = {}
    for change in changes:
        if not can_transition(change.old, change.new):
            raise ValueError(
                f"task instance {change.ti_id}: {change.old} -> {change.new} is not an allowed"
                " transition (see drayman.states.TI_TRANSITIONS)"
            )
        by_pair.setdefault((change.old, change.new), []).append(change.ti_id)
    if len(changes) > 1:
        lock_by_id(conn, (change.ti_id for change in changes))
    changed = 0
    for (old, new), ids in by_pair.items():
        values: dict[str, Any] = {"state": new}
        if new in (TIState.UPSTREAM_FAILED, TIState.SKIPPED, TIState.REMOVED):
            values["end_date"] = now
        result = conn.execute(
            update(task_instance)
            .where(task_instance.c.id.in_(ids), task_instance.c.state == old)
            .values(**values)
        )
        changed += result.rowcount
    return changed


NOT_YET_TRIED: dict[str, Any] = {
    "current_try_id": None,
    "queued_at": None,
    "start_date": None,
    "end_date": None,
    "next_retry_at": None,
    "result": None,
}
"""What a task instance that runs again starts from: no try in flight, no dates, no result
(its old tries stay as history; `try_number` goes on)."""


def expand(conn: Connection, placeholder_id: int, count: int, now: datetime) -> None:
    """Replace a mapped task's placeholder by `count` task instances (or skip it if none).

    A task expanded before and cleared since (`actions._unexpand`) has REMOVED elements: those
    below `count` come back SCHEDULED with their tries kept (numbering goes on, all retries
    again); the others stay REMOVED, and only missing elements are inserted.
    """
    if count == 0:
        apply_changes(conn, [StateChange(placeholder_id, TIState.PENDING, TIState.SKIPPED)], now)
        return
    result = conn.execute(
        update(task_instance)
        .where(task_instance.c.id == placeholder_id, task_instance.c.state == TIState.PENDING)
        .values(state=TIState.REMOVED, end_date=now)
    )
    if result.rowcount != 1:
        return
    full = one_as(
        TaskInstanceRow,
        conn.execute(select(task_instance).where(task_instance.c.id == placeholder_id)).one(),
    )
    earlier = dict(
        conn.execute(
            select(task_instance.c.map_index, task_instance.c.id).where(
                task_instance.c.dag_run_id == full.dag_run_id,
                task_instance.c.task_id == full.task_id,
                task_instance.c.map_index >= 0,
            )
        ).all()
    )
    _revive(conn, [ti_id for index, ti_id in earlier.items() if index < count], full.max_tries)
    missing = [index for index in range(count) if index not in earlier]
    if missing:
        conn.execute(insert(task_instance), [_element(full, index) for index in missing])


def _revive(conn: Connection, ids: list[int], tries_allowed: int) -> None:
    if not ids:
        return
    conn.execute(
        update(task_instance)
        .where(task_instance.c.id.in_(ids), task_instance.c.state == TIState.REMOVED)
        .values(
            state=TIState.SCHEDULED,
            max_tries=task_instance.c.try_number + tries_allowed,
            **NOT_YET_TRIED,
        )
    )


def _element(placeholder: TaskInstanceRow, index: int) -> dict[str, Any]:
    return {
        "dag_run_id": placeholder.dag_run_id,
        "task_id": placeholder.task_id,
        "map_index": index,
        "state": TIState.SCHEDULED,
        "try_number": 0,
        "max_tries": placeholder.max_tries,
        "priority": placeholder.priority,
        "pool": placeholder.pool,
        "pool_slots": placeholder.pool_slots,
        "queue": placeholder.queue,
    }


_LOCK_BY_ID = (
    select(task_instance, task_instance.c.current_try_id.label("fence"))
    .where(task_instance.c.id.in_(bindparam("b_ids", expanding=True)))
    .order_by(task_instance.c.id)
    .with_for_update()
)


def lock_by_id(conn: Connection, ids: Iterable[int]) -> list[LockedTaskInstance]:
    """These task instances, read afresh and locked until the transaction ends.

    Locks are taken in ascending id order on every database (ADR 15): the `IN` list on the
    primary key is a range scan in key order on InnoDB, and PostgreSQL sorts before it locks.
    Each row carries its `current_try_id` also as `fence`, the shape `tries.lock_current`
    returns.
    """
    wanted = sorted(set(ids))
    if not wanted:
        return []
    return all_as(LockedTaskInstance, conn.execute(_LOCK_BY_ID, {"b_ids": wanted}))


def schedulable(conn: Connection, limit: int, *, lock: bool = False) -> list[TaskInstanceRow]:
    """SCHEDULED task instances, most urgent first.

    With `lock` (PostgreSQL, MySQL) the rows are locked FOR UPDATE SKIP LOCKED: several
    schedulers each take a disjoint set instead of waiting on, or double-queueing, each other.
    """
    query = (
        select(task_instance)
        .where(task_instance.c.state == TIState.SCHEDULED)
        .order_by(task_instance.c.priority.desc(), task_instance.c.id)
        .limit(limit)
    )
    if lock:
        query = query.with_for_update(skip_locked=True)
    return all_as(TaskInstanceRow, conn.execute(query))


@dataclass(frozen=True, slots=True)
class DueRetry:
    """A task instance whose wait for its next try is over."""

    id: int
    dag_run_id: int


def retries_due(conn: Connection, now: datetime) -> list[DueRetry]:
    """UP_FOR_RETRY task instances whose wait is over."""
    return all_as(
        DueRetry,
        conn.execute(
            select(task_instance.c.id, task_instance.c.dag_run_id).where(
                task_instance.c.state == TIState.UP_FOR_RETRY,
                task_instance.c.next_retry_at <= now,
            )
        ),
    )


def next_retry_time(conn: Connection) -> datetime | None:
    """When the earliest waiting retry becomes due."""
    return conn.execute(
        select(func.min(task_instance.c.next_retry_at)).where(
            task_instance.c.state == TIState.UP_FOR_RETRY
        )
    ).scalar_one_or_none()


@dataclass(frozen=True)
class SlotUsage:
    """Slots taken by queued and running task instances: per pool, and per DAG."""

    per_pool: dict[str, int]
    per_dag: dict[str, int]


def slot_usage(conn: Connection) -> SlotUsage:
    """Pool slots and max_active_tasks counts in one query over the active task instances."""
    rows = conn.execute(
        select(
            task_instance.c.pool,
            dag_run.c.dag_id,
            func.sum(task_instance.c.pool_slots),
            func.count(),
        )
        .join(dag_run, dag_run.c.id == task_instance.c.dag_run_id)
        .where(task_instance.c.state.in_(list(TI_ACTIVE)))
        .group_by(task_instance.c.pool, dag_run.c.dag_id)
    )
    per_pool: dict[str, int] = {}
    per_dag: dict[str, int] = {}
    for pool, dag_id, slots, count in rows:
        per_pool[pool] = per_pool.get(pool, 0) + int(slots or 0)
        per_dag[dag_id] = per_dag.get(dag_id, 0) + int(count)
    return SlotUsage(per_pool, per_dag)


def pool_usage(conn: Connection) -> dict[str, int]:
    """Slots taken per pool by queued and running task instances."""
    return slot_usage(conn).per_pool


def active_per_dag(conn: Connection) -> dict[str, int]:
    """Queued and running task instances per DAG, for max_active_tasks."""
    return slot_usage(conn).per_dag


def per_queue(conn: Connection) -> dict[str, dict[str, int]]:
    """Task instances waiting (SCHEDULED, QUEUED) and RUNNING, per queue."""
    rows = conn.execute(
        select(task_instance.c.queue, task_instance.c.state, func.count())
        .where(task_instance.c.state.in_([TIState.SCHEDULED, TIState.QUEUED, TIState.RUNNING]))
        .group_by(task_instance.c.queue, task_instance.c.state)
    )
    counts: dict[str, dict[str, int]] = {}
    for queue, state, count in rows:
        counts.setdefault(queue, {})[state] = int(count)
    return counts


def results_of(conn: Connection, run_id: int, task_ids: Iterable[str]) -> dict[str, Any]:
    """Return values of upstream tasks in one run; a mapped task gives the list of its results."""
    ids = list(set(task_ids))
    if not ids:
        return {}
    rows = conn.execute(
        select(task_instance.c.task_id, task_instance.c.map_index, task_instance.c.result)
        .where(
            task_instance.c.dag_run_id == run_id,
            task_instance.c.task_id.in_(ids),
            task_instance.c.state != TIState.REMOVED,
        )
        .order_by(task_instance.c.task_id, task_instance.c.map_index)
    )
    results: dict[str, Any] = {}
    for row in rows:
        value = None if row.result is None else json.loads(row.result)
        if row.map_index < 0:
            results[row.task_id] = value
        else:
            results.setdefault(row.task_id, []).append(value)
    return results
