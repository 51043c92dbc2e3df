"""Tries: one row per attempt at a task instance, fenced by the try's id.

The try id is the fencing token. A start or an outcome is accepted only while the try is
unfinished and is still its task instance's `current_try_id`; a worker whose try was declared
lost (or a redelivered message) can write nothing, so two tries of one task never both count.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from drayman.states import TIState, TryState
from drayman.store.engine import inserted_id
from drayman.store.schema import component, dag_run, task_instance, task_try
from drayman.workloads import TryOutcome, TryStarted

UNFINISHED = (TryState.QUEUED, TryState.RUNNING)


@dataclass(frozen=True)
class NewTry:
    """A try just created for a task instance that was SCHEDULED."""

    try_id: int
    ti_id: int
    dag_run_id: int
    task_id: str
    map_index: int
    try_number: int
    max_tries: int
    log_path: str


@dataclass(frozen=True)
class Recorded:
    """What recording an outcome did to the task instance."""

    ti_id: int
    dag_run_id: int
    task_id: str
    state: TIState
    try_number: int
    max_tries: int


def create_tries(
    conn: Connection,
    tis: Sequence[Row[Any]],
    *,
    log_paths: Sequence[str],
    worker_id: int | None,
    now: datetime,
) -> list[NewTry]:
    """Move SCHEDULED task instances to QUEUED, each with a new try that becomes its fence."""
    created: list[NewTry] = []
    for ti, log_path in zip(tis, log_paths, strict=True):
        number = ti.try_number + 1
        # Claim the task instance before inserting the try: if another scheduler took it
        # first (our row is stale), its try already holds (ti, number) and inserting ours
        # would be a unique-key error that rolls back everything else in this transaction.
        moved = conn.execute(
            update(task_instance)
            .where(
                task_instance.c.id == ti.id,
                task_instance.c.state == TIState.SCHEDULED,
                task_instance.c.try_number == ti.try_number,
            )
            .values(
                state=TIState.QUEUED,
                try_number=number,
                queued_at=now,
                next_retry_at=None,
            )
        ).rowcount
        if moved != 1:
            continue
        try_id = inserted_id(
            conn.execute(
                insert(task_try).values(
                    task_instance_id=ti.id,
                    try_number=number,
                    state=TryState.QUEUED,
                    worker_id=worker_id,
                    queued_at=now,
                    log_path=log_path,
                )
            )
        )
        conn.execute(
            update(task_instance).where(task_instance.c.id == ti.id).values(current_try_id=try_id)
        )
        created.append(
            NewTry(
                try_id=int(try_id),
                ti_id=ti.id,
                dag_run_id=ti.dag_run_id,
                task_id=ti.task_id,
                map_index=ti.map_index,
                try_number=number,
                max_tries=ti.max_tries,
                log_path=log_path,
            )
        )
    return created


def record_started(conn: Connection, event: TryStarted, *, worker_id: int | None = None) -> bool:
    """Mark a try RUNNING. False when the fence refuses it."""
    ti_id = conn.execute(
        select(task_try.c.task_instance_id).where(
            task_try.c.id == event.try_id, task_try.c.state == TryState.QUEUED
        )
    ).scalar_one_or_none()
    if ti_id is None:
        return False
    moved = conn.execute(
        update(task_instance)
        .where(
            task_instance.c.id == ti_id,
            task_instance.c.current_try_id == event.try_id,
            task_instance.c.state == TIState.QUEUED,
        )
        .values(state=TIState.RUNNING, start_date=event.started_at)
    ).rowcount
    if moved != 1:
        return False
    values: dict[str, Any] = {
        "state": TryState.RUNNING,
        "start_date": event.started_at,
        "hostname": event.hostname,
        "pid": event.pid,
    }
    if worker_id is not None:
        values["worker_id"] = worker_id
    conn.execute(update(task_try).where(task_try.c.id == event.try_id).values(**values))
    return True


def record_outcome(
    conn: Connection,
    outcome: TryOutcome,
    *,
    retry_delay_s: Callable[[Row[Any]], float],
) -> Recorded | None:
    """Record how a try ended and move its task instance on. None when the fence refuses it.

    `retry_delay_s(ti_row)` gives the wait before the next try when one is left.
    """
    ti = conn.execute(
        select(task_instance)
        .join(task_try, task_try.c.task_instance_id == task_instance.c.id)
        .where(
            task_try.c.id == outcome.try_id,
            task_try.c.state.in_(UNFINISHED),
            task_instance.c.current_try_id == outcome.try_id,
        )
    ).first()
    if ti is None:
        return None
    values: dict[str, Any]
    if outcome.succeeded:
        new_state, values = TIState.SUCCESS, {"result": outcome.result_json}
    elif ti.try_number < ti.max_tries:
        delay = timedelta(seconds=retry_delay_s(ti))
        new_state, values = TIState.UP_FOR_RETRY, {"next_retry_at": outcome.ended_at + delay}
    else:
        new_state, values = TIState.FAILED, {}
    moved = conn.execute(
        update(task_instance)
        .where(
            task_instance.c.id == ti.id,
            task_instance.c.current_try_id == outcome.try_id,
            task_instance.c.state.in_([TIState.QUEUED, TIState.RUNNING]),
        )
        .values(
            state=new_state,
            start_date=ti.start_date or outcome.started_at,
            end_date=outcome.ended_at,
            **values,
        )
    ).rowcount
    if moved != 1:
        return None
    conn.execute(
        update(task_try)
        .where(task_try.c.id == outcome.try_id)
        .values(
            state=TryState.SUCCESS if outcome.succeeded else TryState.FAILED,
            start_date=outcome.started_at,
            end_date=outcome.ended_at,
            exit_code=outcome.exit_code,
            signal=outcome.signal,
            error=outcome.error,
            **({"hostname": outcome.hostname} if outcome.hostname else {}),
            **({"pid": outcome.pid} if outcome.pid is not None else {}),
        )
    )
    return Recorded(
        ti_id=ti.id,
        dag_run_id=ti.dag_run_id,
        task_id=ti.task_id,
        state=new_state,
        try_number=ti.try_number,
        max_tries=ti.max_tries,
    )


def unfinished_of_dead_workers(conn: Connection, cutoff: datetime) -> list[Row[Any]]:
    """Unfinished tries whose worker stopped, or has not heartbeaten since `cutoff`."""
    return list(
        conn.execute(
            select(task_try.c.id, task_try.c.start_date, task_try.c.queued_at, component.c.hostname)
            .join(component, component.c.id == task_try.c.worker_id)
            .where(
                task_try.c.state.in_(UNFINISHED),
                (component.c.heartbeat_at < cutoff) | (component.c.state == "stopped"),
            )
        )
    )


def tries_of_run(conn: Connection, run_pk: int) -> list[Row[Any]]:
    """Every try of every task instance of one run, for `runs show`."""
    return list(
        conn.execute(
            select(
                task_instance.c.task_id,
                task_instance.c.map_index,
                task_instance.c.state.label("ti_state"),
                task_try,
            )
            .join(task_try, task_try.c.task_instance_id == task_instance.c.id, isouter=True)
            .where(task_instance.c.dag_run_id == run_pk)
            .order_by(task_instance.c.id, task_try.c.try_number)
        )
    )


def try_rows_between(conn: Connection, run_pks: Sequence[int]) -> list[Row[Any]]:
    """Tries of these runs with their task ids and times (benchmarks, Gantt charts)."""
    return list(
        conn.execute(
            select(task_instance.c.task_id, task_instance.c.map_index, dag_run.c.dag_id, task_try)
            .join(task_try, task_try.c.task_instance_id == task_instance.c.id)
            .join(dag_run, dag_run.c.id == task_instance.c.dag_run_id)
            .where(task_instance.c.dag_run_id.in_(list(run_pks)))
        )
    )
