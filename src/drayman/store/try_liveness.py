"""Liveness questions about tries: which are over, unclaimed, or held by a dead worker.

The answers are ids and a few columns, read without locks: whoever acts on them (stops a
process, resends a workload, records a try lost) goes through the fenced write path in
`tries`, which refuses whatever changed meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, select

from drayman.states import TIState, TryState
from drayman.store.rows import all_as
from drayman.store.schema import component, task_instance, task_try
from drayman.store.tries import UNFINISHED


def ended_among(conn: Connection, try_ids: Sequence[int]) -> list[int]:
    """The tries among `try_ids` that the store says are over, though they may still run.

    A try a person cancelled, cleared or marked, or that was declared lost, is ended in the
    store first (ADR 4); whoever runs its process asks this and stops it (ADR 12).
    """
    if not try_ids:
        return []
    rows = conn.execute(_ENDED_AMONG, {"b_ids": sorted(set(try_ids))})
    return [row.id for row in rows]


_ENDED_AMONG = select(task_try.c.id).where(
    task_try.c.id.in_(bindparam("b_ids", expanding=True)), task_try.c.state.not_in(UNFINISHED)
)


def unclaimed_since(conn: Connection, cutoff: datetime, limit: int = 1000) -> list[int]:
    """Ids of tries sent to workers before `cutoff` that no worker has claimed yet."""
    return list(
        conn.execute(
            select(task_try.c.id)
            .join(task_instance, task_instance.c.current_try_id == task_try.c.id)
            .where(
                task_try.c.state == TryState.QUEUED,
                task_try.c.queued_at < cutoff,
                task_instance.c.state == TIState.QUEUED,
            )
            .order_by(task_try.c.id)
            .limit(limit)
        ).scalars()
    )


@dataclass(frozen=True, slots=True)
class OrphanedTry:
    """An unfinished try whose worker stopped or went silent."""

    id: int
    start_date: datetime | None
    queued_at: datetime
    hostname: str


def unfinished_of_dead_workers(conn: Connection, cutoff: datetime) -> list[OrphanedTry]:
    """Unfinished tries whose worker stopped, or has not heartbeaten since `cutoff`."""
    return all_as(
        OrphanedTry,
        conn.execute(
            select(task_try.c.id, task_try.c.start_date, task_try.c.queued_at, component.c.hostname)
            .join(component, component.c.id == task_try.c.worker_id)
            .where(
                task_try.c.state.in_(UNFINISHED),
                (component.c.heartbeat_at < cutoff) | (component.c.state == "stopped"),
            )
        ),
    )
