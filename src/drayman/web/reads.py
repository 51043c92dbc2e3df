"""Read models shared by the pages and the JSON API: plain JSON-ready dicts.

The SQL lives in `drayman.store` (mostly `store/history.py`); this module opens one short
read transaction per call and shapes rows for display: times as ISO 8601 in UTC (and, for a
DAG's schedule, in its own timezone too), JSON columns decoded. The field names follow the
CLI's `--json` output where the CLI has one, so a script can move from one to the other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from drayman import fleet
from drayman.config import Settings
from drayman.spec import DagSpec
from drayman.store import bundles as bundle_store
from drayman.store import components, history
from drayman.store import dags as dag_store
from drayman.store import runs as run_store
from drayman.store.engine import Store
from drayman.store.history import RecentRun, TryDetail
from drayman.store.rows import DagRow, DagRunRow, TryRow
from drayman.timetables import dst_change, parse_schedule

NEXT_RUNS = 5


@dataclass(frozen=True)
class Paging:
    limit: int = 50
    offset: int = 0


def page(items: list[dict[str, Any]], total: int, paging: Paging) -> dict[str, Any]:
    return {"items": items, "total": total, "limit": paging.limit, "offset": paging.offset}


iso = fleet.iso


# -- health ----------------------------------------------------------------------------------


def health(store: Store, heartbeat_timeout_s: float) -> dict[str, Any]:
    """Database reachable? A scheduler heartbeating within the timeout? Never raises."""
    try:
        with store.read() as conn:
            store.ping(conn)
            now = store.db_now(conn)
            schedulers = components.live(conn, "scheduler", datetime(1970, 1, 1, tzinfo=UTC))
    except Exception as exc:  # the point of a health check: report, do not fail
        return {
            "database": f"error: {type(exc).__name__}",
            "scheduler": {"alive": False, "heartbeat_age_s": None},
        }
    ages = [(now - row.heartbeat_at).total_seconds() for row in schedulers]
    age = min(ages) if ages else None
    alive = age is not None and age <= heartbeat_timeout_s
    rounded = None if age is None else round(max(age, 0.0), 1)
    return {"database": "ok", "scheduler": {"alive": alive, "heartbeat_age_s": rounded}}


# -- DAGs ------------------------------------------------------------------------------------


def dag_summary(row: DagRow) -> dict[str, Any]:
    """A DAG as a list shows it: the CLI's `dags list --json` fields plus the next run's
    local time."""
    return {
        "dag_id": row.dag_id,
        "schedule": row.schedule,
        "timezone": row.timezone,
        "is_paused": bool(row.is_paused),
        "is_active": bool(row.is_active),
        "tags": json.loads(row.tags or "[]"),
        "description": row.description,
        "fileloc": row.fileloc,
        "bundle_version": row.bundle_version,
        "next_run_after": iso(row.next_run_after),
        "next_run_after_local": _local(row.next_run_after, row.timezone),
        "next_logical_date": iso(row.next_logical_date),
        "max_active_runs": row.max_active_runs,
        "max_active_tasks": row.max_active_tasks,
    }


def dag_list(
    store: Store,
    *,
    tag: str | None,
    search: str | None,
    paused: bool | None,
    paging: Paging,
    recent: int = 0,
) -> dict[str, Any]:
    """A page of DAGs; with `recent`, each carries the states of its newest runs."""
    with store.read() as conn:
        found = history.page_dags(
            conn, tag=tag, search=search, paused=paused, limit=paging.limit, offset=paging.offset
        )
        runs = history.recent_runs(conn, [r.dag_id for r in found.rows], recent) if recent else {}
    items = []
    for row in found.rows:
        item = dag_summary(row)
        if recent:
            item["recent_runs"] = [_run_brief(r) for r in runs.get(row.dag_id, [])]
        items.append(item)
    return page(items, found.total, paging)


def dag_detail(store: Store, dag_id: str, now: datetime) -> dict[str, Any]:
    """One DAG: its summary, params, tasks, and the next runs in local time and UTC."""
    with store.read() as conn:
        row = dag_store.get_dag(conn, dag_id)
        spec = dag_store.load_spec(conn, dag_id, row.bundle_version)
    detail = dag_summary(row)
    detail["params"] = {
        name: {
            "default": p.default,
            "type": p.type,
            "description": p.description,
            "required": p.required,
        }
        for name, p in spec.params.items()
    }
    detail["tasks"] = [
        {"task_id": t.task_id, "kind": t.kind, "upstream": list(t.upstream), "queue": t.queue}
        for t in spec.tasks.values()
    ]
    detail["catchup"] = spec.catchup
    detail["start_date"] = spec.start_date
    detail["end_date"] = spec.end_date
    detail["next_runs"] = next_runs(spec, now, NEXT_RUNS)
    return detail


def next_runs(spec: DagSpec, now: datetime, count: int) -> list[dict[str, Any]]:
    """Upcoming runs, as `drayman dags next-runs --json` shows them (DST changes noted)."""
    timetable = parse_schedule(spec.schedule, spec.timezone)
    start = datetime.fromisoformat(spec.start_date) if spec.start_date else None
    end = datetime.fromisoformat(spec.end_date) if spec.end_date else None
    tz = ZoneInfo(spec.timezone)
    items, previous = [], None
    for info in timetable.upcoming(now, count, start_date=start, end_date=end):
        items.append(
            {
                "run_after": info.run_after.astimezone(tz).isoformat(),
                "run_after_utc": info.run_after.astimezone(UTC).isoformat(),
                "logical_date": info.logical_date.astimezone(tz).isoformat(),
                "data_interval_start": info.data_interval_start.astimezone(tz).isoformat(),
                "data_interval_end": info.data_interval_end.astimezone(tz).isoformat(),
                "dst_change": dst_change(previous, info.run_after, tz),
            }
        )
        previous = info.run_after
    return items


def dag_code(store: Store, dag_id: str, version: str | None) -> dict[str, Any]:
    """The DAG file's code at `version` (default: the DAG's newest), with the versions known."""
    with store.read() as conn:
        row = dag_store.get_dag(conn, dag_id)
        chosen = version or row.bundle_version
        source = dag_store.load_source(conn, dag_id, chosen)
        versions = history.code_versions(conn, dag_id)
    return {
        "dag_id": dag_id,
        "bundle_version": chosen,
        "fileloc": row.fileloc,
        "source": source,
        "versions": [
            {"bundle_version": v.bundle_version, "created_at": iso(v.created_at)} for v in versions
        ],
    }


def import_errors(store: Store) -> list[dict[str, Any]]:
    """Import errors of the newest bundle: file, line, message."""
    with store.read() as conn:
        version = bundle_store.latest_deployed_version(conn)
        rows = dag_store.import_errors(conn, version) if version else []
    return [
        {
            "fileloc": r.fileloc,
            "lineno": r.lineno,
            "message": r.message,
            "bundle_version": r.bundle_version,
            "created_at": iso(r.created_at),
        }
        for r in rows
    ]


# -- runs, task instances, tries -------------------------------------------------------------


def run_json(row: DagRunRow) -> dict[str, Any]:
    duration = None
    if row.start_date is not None and row.end_date is not None:
        duration = (row.end_date - row.start_date).total_seconds()
    return {
        "dag_id": row.dag_id,
        "run_id": row.run_id,
        "run_type": row.run_type,
        "state": row.state,
        "bundle_version": row.bundle_version,
        "logical_date": iso(row.logical_date),
        "data_interval_start": iso(row.data_interval_start),
        "data_interval_end": iso(row.data_interval_end),
        "run_after": iso(row.run_after),
        "conf": json.loads(row.conf or "{}"),
        "params": json.loads(row.params or "{}"),
        "triggered_by": row.triggered_by,
        "created_at": iso(row.created_at),
        "start_date": iso(row.start_date),
        "end_date": iso(row.end_date),
        "duration_s": duration,
    }


def run_list(
    store: Store,
    dag_id: str,
    *,
    state: str | None,
    since: datetime | None,
    until: datetime | None,
    paging: Paging,
) -> dict[str, Any]:
    with store.read() as conn:
        dag_store.get_dag(conn, dag_id)  # an unknown DAG is a 404, not an empty list
        found = history.page_runs(
            conn,
            dag_id,
            state=state,
            since=since,
            until=until,
            limit=paging.limit,
            offset=paging.offset,
        )
    return page([run_json(r) for r in found.rows], found.total, paging)


def run_detail(store: Store, dag_id: str, run_id: str) -> dict[str, Any]:
    with store.read() as conn:
        dag_store.get_dag(conn, dag_id)
        return run_json(run_store.get_run(conn, dag_id, run_id))


def task_instances(store: Store, dag_id: str, run_id: str, paging: Paging) -> dict[str, Any]:
    with store.read() as conn:
        dag_store.get_dag(conn, dag_id)
        run = run_store.get_run(conn, dag_id, run_id)
        found = history.task_instances_of_run(conn, run.id, paging.limit, paging.offset)
    items = [
        {
            "task_id": r.task_id,
            "map_index": r.map_index,
            "state": r.state,
            "try_number": r.try_number,
            "max_tries": r.max_tries,
            "queue": r.queue,
            "pool": r.pool,
            "priority": r.priority,
            "queued_at": iso(r.queued_at),
            "start_date": iso(r.start_date),
            "end_date": iso(r.end_date),
            "next_retry_at": iso(r.next_retry_at),
            "current_try_id": r.current_try_id,
        }
        for r in found.rows
    ]
    return page(items, found.total, paging)


def try_json(row: TryRow | TryDetail) -> dict[str, Any]:
    duration = None
    if row.start_date is not None and row.end_date is not None:
        duration = (row.end_date - row.start_date).total_seconds()
    return {
        "try_id": row.id,
        "try_number": row.try_number,
        "state": row.state,
        "hostname": row.hostname,
        "pid": row.pid,
        "worker_id": row.worker_id,
        "queued_at": iso(row.queued_at),
        "start_date": iso(row.start_date),
        "end_date": iso(row.end_date),
        "duration_s": duration,
        "exit_code": row.exit_code,
        "signal": row.signal,
        "error": row.error,
    }


def tries(
    store: Store, dag_id: str, run_id: str, task_id: str, map_index: int, paging: Paging
) -> dict[str, Any]:
    with store.read() as conn:
        dag_store.get_dag(conn, dag_id)
        run = run_store.get_run(conn, dag_id, run_id)
        found = history.tries_of_task(conn, run.id, task_id, map_index, paging.limit, paging.offset)
    return page([try_json(r) for r in found.rows], found.total, paging)


def try_detail(store: Store, try_id: int) -> dict[str, Any]:
    with store.read() as conn:
        row = history.get_try(conn, try_id)
    detail = try_json(row)
    detail.update(
        dag_id=row.dag_id, run_id=row.run_id, task_id=row.task_id, map_index=row.map_index
    )
    return detail


# -- workers and queues ----------------------------------------------------------------------


def workers(store: Store, paging: Paging) -> dict[str, Any]:
    """Workers as `drayman workers list --json` shows them, newest first."""
    items = fleet.workers(store)
    return page(items[paging.offset : paging.offset + paging.limit], len(items), paging)


def queues(store: Store, settings: Settings, paging: Paging) -> dict[str, Any]:
    """Queues as `drayman queues list --json` shows them: waiting, running, serving workers."""
    items = fleet.queues(store, settings)
    return page(items[paging.offset : paging.offset + paging.limit], len(items), paging)


# -- helpers ---------------------------------------------------------------------------------


def _run_brief(row: RecentRun) -> dict[str, Any]:
    return {
        "run_id": row.run_id,
        "state": row.state,
        "run_type": row.run_type,
        "logical_date": iso(row.logical_date),
    }


def _local(value: datetime | None, timezone: str) -> str | None:
    if value is None:
        return None
    try:
        return value.astimezone(ZoneInfo(timezone)).isoformat()
    except (KeyError, ValueError):
        return None
