"""Claims: a remote worker takes the tries a broker brought it, or finds them gone.

A claim is the write path's first step on a worker: the QUEUED, current tries among the ids
it received are locked (task instances in ascending id order, ADR 15) and marked RUNNING in
one transaction, so of two workers given the same try only one gets it. The scheduler reads
the same tries without a lock to resend the workloads of those nobody claimed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from drayman.states import TIState, TryState
from drayman.store.schema import task_instance, task_try
from drayman.store.tries import START_VALUES, NewTry, lock_tis_of_tries

# Hot statements, built once: SQLAlchemy then computes their cache keys once too, instead of
# on every call (a measurable share of a worker's CPU per try).
_QUEUED_CURRENT = (
    select(
        task_try.c.id,
        task_instance.c.id.label("ti_id"),
        task_instance.c.dag_run_id,
        task_instance.c.task_id,
        task_instance.c.map_index,
        task_instance.c.max_tries,
        task_try.c.try_number,
        task_try.c.log_path,
    )
    .join(task_instance, task_instance.c.id == task_try.c.task_instance_id)
    .where(
        task_try.c.id.in_(bindparam("b_ids", expanding=True)),
        task_try.c.state == TryState.QUEUED,
        task_instance.c.current_try_id == task_try.c.id,
        task_instance.c.state == TIState.QUEUED,
    )
    .order_by(task_try.c.id)
)
# PostgreSQL sorts by task instance, then locks only the task instances (ADR 15)
_LOCK_CLAIMABLE = (
    _QUEUED_CURRENT.order_by(None).order_by(task_instance.c.id).with_for_update(of=task_instance)
)


def lock_claimable(conn: Connection, try_ids: Sequence[int]) -> list[NewTry]:
    """The tries among `try_ids` that are QUEUED and current, locked until the transaction ends.

    A remote worker claims what this returns with `record_claimed` in the same
    transaction: a second worker asking for one of them waits for the lock, then finds it
    RUNNING and gets nothing. Their task instances are locked in ascending id order, as
    every writer of try states locks them (ADR 15), so no two of them deadlock.
    """
    if not try_ids:
        return []
    if conn.dialect.name != "mysql":
        return _queued_current(conn, try_ids, _LOCK_CLAIMABLE)
    lock_tis_of_tries(conn, try_ids)  # InnoDB: see _TIS_OF_TRIES
    return _queued_current(conn, try_ids, _QUEUED_CURRENT)


def queued_current(conn: Connection, try_ids: Sequence[int]) -> list[NewTry]:
    """The tries among `try_ids` that are QUEUED and current, read without a lock."""
    return _queued_current(conn, try_ids, _QUEUED_CURRENT)


def _queued_current(conn: Connection, try_ids: Sequence[int], statement: Any) -> list[NewTry]:
    if not try_ids:
        return []
    rows = conn.execute(statement, {"b_ids": sorted(set(try_ids))})
    return [
        NewTry(
            try_id=row.id,
            ti_id=row.ti_id,
            dag_run_id=row.dag_run_id,
            task_id=row.task_id,
            map_index=row.map_index,
            try_number=row.try_number,
            max_tries=row.max_tries,
            log_path=row.log_path,
        )
        for row in rows
    ]


_CLAIM_TI = (
    update(task_instance)
    .where(
        task_instance.c.current_try_id.in_(bindparam("b_ids", expanding=True)),
        task_instance.c.state == TIState.QUEUED,
    )
    .values(state=TIState.RUNNING, start_date=bindparam("b_start"))
)
_CLAIM_TRY = (
    update(task_try)
    .where(
        task_try.c.id.in_(bindparam("b_ids", expanding=True)),
        task_try.c.state == TryState.QUEUED,
        select(task_instance.c.id).where(task_instance.c.current_try_id == task_try.c.id).exists(),
    )
    .values(**START_VALUES, worker_id=bindparam("b_worker"))
)


def record_claimed(
    conn: Connection,
    try_ids: Sequence[int],
    *,
    started_at: datetime,
    hostname: str,
    pid: int,
    worker_id: int | None,
) -> int:
    """Mark tries RUNNING that one worker process claimed at one moment; how many it took.

    `record_started_many` for the case where every start has the same time, host and pid: two
    plain statements instead of two executemany batches, which cost a remote worker more CPU
    per try than the rows themselves. Fenced the same way.
    """
    if not try_ids:
        return 0
    params = {
        "b_ids": sorted(try_ids),
        "b_start": started_at,
        "b_host": hostname,
        "b_pid": pid,
        "b_worker": worker_id,
    }
    taken = conn.execute(_CLAIM_TI, params).rowcount
    conn.execute(_CLAIM_TRY, params)
    return int(taken)
