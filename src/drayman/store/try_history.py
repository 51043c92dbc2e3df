"""A run's tries as history: what `runs show`, `tasks logs` and the run pages read.

Plain reads, no locks: a try's row only grows (start, end, outcome) and is never deleted
while its run exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select

from drayman.exceptions import NotFoundError
from drayman.states import TryState
from drayman.store.rows import TryRow, all_as, one_as
from drayman.store.schema import task_instance, task_try


@dataclass(frozen=True, slots=True)
class TryOfRun:
    """A task instance of a run with one of its tries; the try's columns are None when the
    task instance has no try yet."""

    task_id: str
    map_index: int
    ti_state: str
    id: int | None
    task_instance_id: int | None
    try_number: int | None
    state: str | None
    hostname: str | None
    pid: int | None
    worker_id: int | None
    queued_at: datetime | None
    start_date: datetime | None
    end_date: datetime | None
    exit_code: int | None
    signal: int | None
    error: str | None
    log_path: str | None


def tries_of_run(conn: Connection, run_pk: int) -> list[TryOfRun]:
    """Every try of every task instance of one run, for `runs show`."""
    return all_as(
        TryOfRun,
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
        ),
    )


def find_try(
    conn: Connection, run_pk: int, task_id: str, map_index: int, try_number: int | None
) -> TryRow:
    """One try of a task of a run: `try_number`, or else the newest."""
    ti = conn.execute(
        select(task_instance.c.id, task_instance.c.try_number).where(
            task_instance.c.dag_run_id == run_pk,
            task_instance.c.task_id == task_id,
            task_instance.c.map_index == map_index,
        )
    ).first()
    if ti is None:
        label = task_id if map_index < 0 else f"{task_id}[{map_index}]"
        raise NotFoundError(
            f"the run has no task {label!r}; `drayman runs show` lists its tasks and tries"
        )
    wanted = ti.try_number if try_number is None else try_number
    row = conn.execute(
        select(task_try).where(
            task_try.c.task_instance_id == ti.id, task_try.c.try_number == wanted
        )
    ).first()
    if row is None:
        if not ti.try_number:
            raise NotFoundError(f"task {task_id!r} has no try yet: it has not been queued")
        raise NotFoundError(
            f"task {task_id!r} has no try {wanted}: its tries are 1 to {ti.try_number}"
        )
    return one_as(TryRow, row)


def try_state(conn: Connection, try_id: int) -> TryState:
    return TryState(
        conn.execute(select(task_try.c.state).where(task_try.c.id == try_id)).scalar_one()
    )
