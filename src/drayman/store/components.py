"""Components (schedulers, workers, DAG processors) and their heartbeats.

Liveness is judged by the database's clock (`Store.db_now`), never by one host's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, insert, select, update

from drayman.states import TryState
from drayman.store.engine import inserted_id
from drayman.store.rows import all_as
from drayman.store.schema import component, task_try


@dataclass(frozen=True, slots=True)
class ComponentRow:
    """A `component` row: a scheduler, worker or DAG processor, and its last heartbeat."""

    id: int
    kind: str
    hostname: str
    pid: int
    executor: str
    queues: str
    concurrency: int
    state: str
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None


@dataclass(frozen=True, slots=True)
class WorkerRow(ComponentRow):
    """A worker with how many tries it runs now."""

    running: int


def register(
    conn: Connection,
    *,
    kind: str,
    hostname: str,
    pid: int,
    executor: str = "",
    queues: Sequence[str] = (),
    concurrency: int = 0,
    now: datetime,
) -> int:
    result = conn.execute(
        insert(component).values(
            kind=kind,
            hostname=hostname,
            pid=pid,
            executor=executor,
            queues=json.dumps(list(queues)),
            concurrency=concurrency,
            state="running",
            started_at=now,
            heartbeat_at=now,
        )
    )
    return inserted_id(result)


def heartbeat(conn: Connection, component_id: int, now: datetime) -> None:
    """Record that the component is alive, and running again if it had been declared dead.

    Another scheduler marks a component stopped once its heartbeats lapse (a long stall); were
    it to stay stopped when its heartbeats resume, every try it runs from then on would be
    declared lost, as `try_liveness.unfinished_of_dead_workers` takes stopped components' tries.
    """
    conn.execute(
        update(component)
        .where(component.c.id == component_id)
        .values(heartbeat_at=now, state="running", stopped_at=None)
    )


def mark_stopped(conn: Connection, component_id: int, now: datetime) -> None:
    conn.execute(
        update(component)
        .where(component.c.id == component_id)
        .values(state="stopped", stopped_at=now)
    )


def live(conn: Connection, kind: str, cutoff: datetime) -> list[ComponentRow]:
    """Components of `kind` that heartbeat since `cutoff`."""
    return all_as(
        ComponentRow,
        conn.execute(
            select(component).where(
                component.c.kind == kind,
                component.c.state == "running",
                component.c.heartbeat_at >= cutoff,
            )
        ),
    )


def live_concurrency(conn: Connection, kind: str, cutoff: datetime) -> dict[str, int]:
    """Queue -> the total --concurrency of the live components of `kind` serving it ("*",
    the local executor's everything, is left out: it is not a queue of its own)."""
    total: dict[str, int] = {}
    for row in live(conn, kind, cutoff):
        for queue in json.loads(row.queues or "[]"):
            if queue != "*":
                total[queue] = total.get(queue, 0) + int(row.concurrency or 0)
    return total


def mark_dead(conn: Connection, kind: str, cutoff: datetime, now: datetime) -> int:
    """Components that stopped heartbeating are recorded as stopped.

    The dead are found by a plain read and updated by primary key. An UPDATE whose WHERE
    scans the (kind, state, heartbeat_at) index would, on MariaDB, wait for the index entry
    that another scheduler's own heartbeat holds locked, while that scheduler waits for ours
    the same way: a deadlock on every tick the two make at the same moment.
    """
    dead = (
        conn.execute(
            select(component.c.id).where(
                component.c.kind == kind,
                component.c.state == "running",
                component.c.heartbeat_at < cutoff,
            )
        )
        .scalars()
        .all()
    )
    stopped = 0
    for component_id in sorted(dead):  # rarely any; one row each, by primary key
        stopped += conn.execute(
            update(component)
            .where(
                component.c.id == component_id,
                component.c.state == "running",
                component.c.heartbeat_at < cutoff,  # unless it heartbeat since the read
            )
            .values(state="stopped", stopped_at=now)
        ).rowcount
    return stopped


def workers(conn: Connection, *, include_stopped: bool = True) -> list[WorkerRow]:
    """Worker components, newest first, each with `running`: its RUNNING tries."""
    running = (
        select(func.count())
        .where(task_try.c.worker_id == component.c.id, task_try.c.state == TryState.RUNNING)
        .scalar_subquery()
        .label("running")
    )
    query = select(component, running).where(component.c.kind == "worker")
    if not include_stopped:
        query = query.where(component.c.state == "running")
    return all_as(WorkerRow, conn.execute(query.order_by(component.c.id.desc())))
