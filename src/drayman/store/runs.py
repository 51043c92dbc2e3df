"""DAG runs: creation (scheduled, manual, backfill), starting, finishing, listing."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from drayman.exceptions import ConflictError, NotFoundError
from drayman.spec import DagSpec
from drayman.states import TI_FINISHED, RunState, RunType, TIState
from drayman.store.engine import inserted_id
from drayman.store.rows import DagRunRow, all_as, one_as
from drayman.store.schema import dag_run, task_instance


def run_id_for(run_type: RunType | str, logical_date: datetime) -> str:
    """Scheduled and backfill run ids derive from the logical date, so a run is made once."""
    return f"{run_type}__{logical_date.isoformat()}"


def create_run(
    conn: Connection,
    *,
    dag_id: str,
    run_id: str,
    run_type: RunType,
    bundle_version: str,
    logical_date: datetime,
    data_interval_start: datetime,
    data_interval_end: datetime,
    run_after: datetime,
    conf: dict[str, Any],
    params: dict[str, Any],
    triggered_by: str,
    now: datetime,
) -> int:
    """Insert a run in state QUEUED; it starts when max_active_runs allows. Returns its id."""
    try:
        with conn.begin_nested():
            result = conn.execute(
                insert(dag_run).values(
                    dag_id=dag_id,
                    run_id=run_id,
                    run_type=str(run_type),
                    state=RunState.QUEUED,
                    bundle_version=bundle_version,
                    logical_date=logical_date,
                    data_interval_start=data_interval_start,
                    data_interval_end=data_interval_end,
                    run_after=run_after,
                    conf=json.dumps(conf),
                    params=json.dumps(params),
                    triggered_by=triggered_by,
                    created_at=now,
                )
            )
    except IntegrityError as exc:
        raise ConflictError(f"DAG {dag_id!r} already has a run {run_id!r}") from exc
    return inserted_id(result)


def runs_to_start(conn: Connection) -> list[DagRunRow]:
    """QUEUED runs, oldest first, with their DAG's active-run limit applied by the caller."""
    return all_as(
        DagRunRow,
        conn.execute(
            select(dag_run)
            .where(dag_run.c.state == RunState.QUEUED)
            .order_by(dag_run.c.run_after, dag_run.c.id)
        ),
    )


def running_counts(conn: Connection) -> dict[str, int]:
    """Running runs per DAG, for max_active_runs."""
    rows = conn.execute(
        select(dag_run.c.dag_id, func.count())
        .where(dag_run.c.state == RunState.RUNNING)
        .group_by(dag_run.c.dag_id)
    )
    return {row[0]: int(row[1]) for row in rows}


def start_run(conn: Connection, run: DagRunRow, spec: DagSpec, now: datetime) -> None:
    """Mark a run RUNNING and create one PENDING task instance per task of its spec.

    Does nothing when the run is no longer QUEUED (another scheduler started it first).
    """
    started = conn.execute(
        update(dag_run)
        .where(dag_run.c.id == run.id, dag_run.c.state == RunState.QUEUED)
        .values(state=RunState.RUNNING, start_date=now)
    ).rowcount
    # a second start must not insert the task instances again (a unique-key error that
    # would roll back the caller's whole transaction), and an empty DAG has none to insert
    if started != 1 or not spec.tasks:
        return
    conn.execute(
        insert(task_instance),
        [
            {
                "dag_run_id": run.id,
                "task_id": task.task_id,
                "map_index": -1,
                "state": TIState.PENDING,
                "try_number": 0,
                "max_tries": task.retries + 1,
                "priority": task.priority,
                "pool": task.pool,
                "pool_slots": task.pool_slots,
                "queue": task.queue,
            }
            for task in spec.tasks.values()
        ],
    )


def running_runs(conn: Connection, run_ids: Iterable[int] | None = None) -> list[DagRunRow]:
    """RUNNING runs (all of them, or those among `run_ids`)."""
    query = select(dag_run).where(dag_run.c.state == RunState.RUNNING)
    if run_ids is not None:
        ids = list(run_ids)
        if not ids:
            return []
        query = query.where(dag_run.c.id.in_(ids))
    return all_as(DagRunRow, conn.execute(query))


def finish_run(conn: Connection, run_id: int, state: RunState, now: datetime) -> bool:
    """Mark a RUNNING run finished; False if another process already did, or if one of its
    task instances is unfinished after all (a user cleared it since the planner looked)."""
    unfinished = (
        select(task_instance.c.id)
        .where(
            task_instance.c.dag_run_id == run_id,
            task_instance.c.state.not_in(sorted(TI_FINISHED)),
        )
        .exists()
    )
    result = conn.execute(
        update(dag_run)
        .where(dag_run.c.id == run_id, dag_run.c.state == RunState.RUNNING, ~unfinished)
        .values(state=state, end_date=now)
    )
    return result.rowcount == 1


def claim_callback(conn: Connection, run_pk: int, state: RunState, now: datetime) -> bool:
    """Take the DAG callback of a run that finished in `state`; False when it is not due.

    The fence of DAG callbacks, as the try id is for tries (ADR 4): a worker runs a callback
    only after this returns True, so a replayed or forged `run_callback` message, or a second
    copy, runs nothing. A run reopened by a clear or a mark is due a callback again when it
    finishes again (`actions` sets `callback_claimed_at` back to NULL).
    """
    changed = conn.execute(
        update(dag_run)
        .where(
            dag_run.c.id == run_pk,
            dag_run.c.state == state,
            dag_run.c.callback_claimed_at.is_(None),
        )
        .values(callback_claimed_at=now)
    ).rowcount
    return changed == 1


def get_run(conn: Connection, dag_id: str, run_id: str) -> DagRunRow:
    row = conn.execute(
        select(dag_run).where(dag_run.c.dag_id == dag_id, dag_run.c.run_id == run_id)
    ).first()
    if row is None:
        raise NotFoundError(f"DAG {dag_id!r} has no run {run_id!r}")
    return one_as(DagRunRow, row)


def get_run_by_id(conn: Connection, run_pk: int) -> DagRunRow:
    row = conn.execute(select(dag_run).where(dag_run.c.id == run_pk)).first()
    if row is None:
        raise NotFoundError(f"no run with id {run_pk}")
    return one_as(DagRunRow, row)


def find_runs(conn: Connection, run_id: str) -> list[DagRunRow]:
    """Runs with this run id in any DAG (run ids are unique per DAG only)."""
    return all_as(DagRunRow, conn.execute(select(dag_run).where(dag_run.c.run_id == run_id)))


def list_runs(
    conn: Connection,
    *,
    dag_id: str | None = None,
    state: str | None = None,
    limit: int = 50,
) -> list[DagRunRow]:
    """Newest runs first."""
    query = select(dag_run).order_by(dag_run.c.logical_date.desc(), dag_run.c.id.desc())
    if dag_id is not None:
        query = query.where(dag_run.c.dag_id == dag_id)
    if state is not None:
        query = query.where(dag_run.c.state == state)
    return all_as(DagRunRow, conn.execute(query.limit(limit)))


def latest_scheduled_run(conn: Connection, dag_id: str) -> DagRunRow | None:
    """The newest scheduled run of a DAG, from which its next run follows."""
    row = conn.execute(
        select(dag_run)
        .where(dag_run.c.dag_id == dag_id, dag_run.c.run_type == RunType.SCHEDULED)
        .order_by(dag_run.c.logical_date.desc())
        .limit(1)
    ).first()
    return None if row is None else one_as(DagRunRow, row)


def logical_dates_between(
    conn: Connection, dag_id: str, start: datetime, end: datetime
) -> set[datetime]:
    """The logical dates of a DAG's runs in [start, end]: the intervals a backfill skips."""
    return set(
        conn.execute(
            select(dag_run.c.logical_date).where(
                dag_run.c.dag_id == dag_id,
                dag_run.c.logical_date >= start,
                dag_run.c.logical_date <= end,
            )
        ).scalars()
    )


@dataclass(frozen=True)
class RunOrigin:
    """Who made a run: its type, and the user or component named in `triggered_by`."""

    run_type: str
    triggered_by: str


def origin_of(conn: Connection, dag_id: str, run_id: str) -> RunOrigin | None:
    """Who made the run `run_id` of a DAG; None when there is none (or it is not visible)."""
    row = conn.execute(
        select(dag_run.c.run_type, dag_run.c.triggered_by).where(
            dag_run.c.dag_id == dag_id, dag_run.c.run_id == run_id
        )
    ).first()
    return None if row is None else RunOrigin(row.run_type, row.triggered_by)
