"""DAGs, their serialized specs per bundle version, and import errors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from drayman.exceptions import NotFoundError
from drayman.spec import DagSpec, ImportFailure, ParsedDag
from drayman.store.rows import DagRow, all_as, one_as
from drayman.store.schema import dag, import_error, serialized_dag


@dataclass(frozen=True)
class NextRun:
    """The next scheduled run of a DAG, as the scheduler stores it (all UTC)."""

    logical_date: datetime
    data_interval_start: datetime
    data_interval_end: datetime
    run_after: datetime


def schedule_key(spec: DagSpec) -> str:
    """Everything the next run depends on; a change means it must be computed again."""
    return json.dumps([spec.schedule, spec.timezone, spec.start_date, spec.end_date, spec.catchup])


def record_parse(
    conn: Connection,
    *,
    bundle_version: str,
    dags: Sequence[ParsedDag],
    errors: Sequence[ImportFailure],
    now: datetime,
) -> None:
    """Store what parsing one bundle version found, and make it the DAGs' newest version.

    DAGs from a file that failed to import keep their last good version (a typo pushed to
    production must not stop a DAG); DAGs that are simply gone become inactive.
    """
    conn.execute(delete(import_error).where(import_error.c.bundle_version == bundle_version))
    if errors:
        conn.execute(
            insert(import_error),
            [
                {
                    "bundle_version": bundle_version,
                    "fileloc": e.fileloc,
                    "lineno": e.lineno,
                    "message": e.message,
                    "created_at": now,
                }
                for e in errors
            ],
        )
    existing = {row.dag_id: row for row in all_as(DagRow, conn.execute(select(dag)))}
    known_specs = set(
        conn.execute(
            select(serialized_dag.c.dag_id).where(serialized_dag.c.bundle_version == bundle_version)
        ).scalars()
    )
    for parsed in dags:
        if parsed.spec.dag_id not in known_specs:
            _insert_spec(conn, parsed, bundle_version, now)
        _upsert_dag(conn, parsed.spec, existing.get(parsed.spec.dag_id), bundle_version, now)
    found = {parsed.spec.dag_id for parsed in dags}
    broken_files = {e.fileloc for e in errors}
    gone = [
        dag_id
        for dag_id, row in existing.items()
        if dag_id not in found and row.is_active and row.fileloc not in broken_files
    ]
    if gone:
        conn.execute(
            update(dag).where(dag.c.dag_id.in_(gone)).values(is_active=False, updated_at=now)
        )


def _insert_spec(conn: Connection, parsed: ParsedDag, bundle_version: str, now: datetime) -> None:
    conn.execute(
        insert(serialized_dag).values(
            dag_id=parsed.spec.dag_id,
            bundle_version=bundle_version,
            fileloc=parsed.spec.fileloc,
            spec=parsed.spec.to_json(),
            source=parsed.source,
            created_at=now,
        )
    )


def _upsert_dag(
    conn: Connection, spec: DagSpec, row: DagRow | None, bundle_version: str, now: datetime
) -> None:
    key = schedule_key(spec)
    values: dict[str, Any] = {
        "bundle_version": bundle_version,
        "fileloc": spec.fileloc,
        "is_active": True,
        "schedule": spec.schedule,
        "timezone": spec.timezone,
        "description": spec.description,
        "tags": json.dumps(list(spec.tags)),
        "max_active_runs": spec.max_active_runs,
        "max_active_tasks": spec.max_active_tasks,
        "schedule_key": key,
        "updated_at": now,
    }
    if row is None:
        conn.execute(
            insert(dag).values(
                dag_id=spec.dag_id, is_paused=False, needs_next=True, created_at=now, **values
            )
        )
        return
    if row.schedule_key != key or not row.is_active:
        values["needs_next"] = True
    conn.execute(update(dag).where(dag.c.dag_id == spec.dag_id).values(**values))


def load_spec(conn: Connection, dag_id: str, bundle_version: str) -> DagSpec:
    """The DagSpec of `dag_id` as of `bundle_version`."""
    text = conn.execute(
        select(serialized_dag.c.spec).where(
            serialized_dag.c.dag_id == dag_id, serialized_dag.c.bundle_version == bundle_version
        )
    ).scalar_one_or_none()
    if text is None:
        raise NotFoundError(f"DAG {dag_id!r} has no spec at bundle {bundle_version[:12]}")
    return DagSpec.from_json(text)


def load_source(conn: Connection, dag_id: str, bundle_version: str) -> str:
    """The code of the file defining `dag_id`, as of `bundle_version`."""
    text = conn.execute(
        select(serialized_dag.c.source).where(
            serialized_dag.c.dag_id == dag_id, serialized_dag.c.bundle_version == bundle_version
        )
    ).scalar_one_or_none()
    if text is None:
        raise NotFoundError(f"DAG {dag_id!r} has no code at bundle {bundle_version[:12]}")
    return str(text)


def get_dag(conn: Connection, dag_id: str) -> DagRow:
    row = conn.execute(select(dag).where(dag.c.dag_id == dag_id)).first()
    if row is None:
        raise NotFoundError(f"no DAG {dag_id!r}; `drayman dags list` shows the known ones")
    return one_as(DagRow, row)


def list_dags(conn: Connection, *, include_inactive: bool = False) -> list[DagRow]:
    query = select(dag).order_by(dag.c.dag_id)
    if not include_inactive:
        query = query.where(dag.c.is_active.is_(True))
    return all_as(DagRow, conn.execute(query))


def set_paused(conn: Connection, dag_id: str, paused: bool, now: datetime) -> None:
    """Pause or unpause; unpausing recomputes the next run so catchup=False skips the gap."""
    get_dag(conn, dag_id)
    values: dict[str, Any] = {"is_paused": paused, "updated_at": now}
    if not paused:
        values["needs_next"] = True
    conn.execute(update(dag).where(dag.c.dag_id == dag_id).values(**values))


def dags_needing_next(conn: Connection) -> list[DagRow]:
    """Active, unpaused DAGs whose next run must be computed again."""
    return all_as(
        DagRow,
        conn.execute(
            select(dag).where(
                dag.c.is_active.is_(True), dag.c.is_paused.is_(False), dag.c.needs_next.is_(True)
            )
        ),
    )


@dataclass(frozen=True, slots=True)
class DueDag:
    """A DAG whose next scheduled run is due, and that run (set together by `set_next_run`)."""

    dag_id: str
    bundle_version: str
    next_logical_date: datetime
    next_data_interval_start: datetime
    next_data_interval_end: datetime
    next_run_after: datetime


def due_dags(conn: Connection, now: datetime, limit: int = 100) -> list[DueDag]:
    """Active, unpaused DAGs whose next scheduled run is due."""
    return all_as(
        DueDag,
        conn.execute(
            select(
                dag.c.dag_id,
                dag.c.bundle_version,
                dag.c.next_logical_date,
                dag.c.next_data_interval_start,
                dag.c.next_data_interval_end,
                dag.c.next_run_after,
            )
            .where(
                dag.c.is_active.is_(True),
                dag.c.is_paused.is_(False),
                dag.c.next_run_after <= now,
            )
            .order_by(dag.c.next_run_after)
            .limit(limit)
        ),
    )


def earliest_next_run(conn: Connection) -> datetime | None:
    """When the scheduler must next wake to create a scheduled run."""
    from sqlalchemy import func

    return conn.execute(
        select(func.min(dag.c.next_run_after)).where(
            dag.c.is_active.is_(True), dag.c.is_paused.is_(False)
        )
    ).scalar_one_or_none()


def set_next_run(conn: Connection, dag_id: str, nxt: NextRun | None, now: datetime) -> None:
    """Store the next scheduled run (None: no more runs) and clear needs_next."""
    conn.execute(
        update(dag)
        .where(dag.c.dag_id == dag_id)
        .values(
            needs_next=False,
            next_logical_date=nxt.logical_date if nxt else None,
            next_data_interval_start=nxt.data_interval_start if nxt else None,
            next_data_interval_end=nxt.data_interval_end if nxt else None,
            next_run_after=nxt.run_after if nxt else None,
            updated_at=now,
        )
    )


@dataclass(frozen=True, slots=True)
class ImportErrorRow:
    """An `import_error` row: a DAG file of a bundle version that failed to import."""

    id: int
    bundle_version: str
    fileloc: str
    lineno: int | None
    message: str
    created_at: datetime


def import_errors(conn: Connection, bundle_version: str) -> list[ImportErrorRow]:
    return all_as(
        ImportErrorRow,
        conn.execute(
            select(import_error)
            .where(import_error.c.bundle_version == bundle_version)
            .order_by(import_error.c.fileloc)
        ),
    )
