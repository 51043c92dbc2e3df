"""Turning new tries into workloads: everything a worker needs, read from the store in bulk.

The same assembly serves the local executor (which is handed the workload whole) and remote
workers (which receive a try id and rebuild the workload here, from the store).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Row, select

from drayman.spec import DagSpec, referenced_tasks
from drayman.store import task_instances as ti_store
from drayman.store.schema import dag_run
from drayman.store.tries import NewTry
from drayman.workloads import CallbackWorkload, RunContextData, TryWorkload

SpecLookup = Callable[[str, str], DagSpec]


def _local_iso(value: datetime, tz: ZoneInfo) -> str:
    return value.astimezone(tz).isoformat()


def run_context(run: Row[Any], spec: DagSpec) -> RunContextData:
    """The run-level context of a run, times in the DAG's timezone."""
    tz = ZoneInfo(spec.timezone)
    return RunContextData(
        dag_id=run.dag_id,
        run_id=run.run_id,
        run_type=run.run_type,
        logical_date=_local_iso(run.logical_date, tz),
        data_interval_start=_local_iso(run.data_interval_start, tz),
        data_interval_end=_local_iso(run.data_interval_end, tz),
        timezone=spec.timezone,
        bundle_version=run.bundle_version,
        params=json.loads(run.params),
        conf=json.loads(run.conf),
    )


def runs_by_id(conn: Connection, run_ids: Sequence[int]) -> dict[int, Row[Any]]:
    if not run_ids:
        return {}
    rows = conn.execute(select(dag_run).where(dag_run.c.id.in_(sorted(set(run_ids)))))
    return {row.id: row for row in rows}


def try_workloads(
    conn: Connection,
    tries: Sequence[NewTry],
    spec_of: SpecLookup,
    runs: Mapping[int, Row[Any]] | None = None,
) -> list[TryWorkload]:
    """Workloads for new tries, with upstream results for Python tasks that take them.

    `runs` may hold the tries' run rows already (the scheduler caches them).
    """
    if runs is None:
        runs = runs_by_id(conn, [t.dag_run_id for t in tries])
    contexts: dict[int, RunContextData] = {}
    workloads = []
    for new in tries:
        run = runs[new.dag_run_id]
        spec = spec_of(run.dag_id, run.bundle_version)
        if run.id not in contexts:
            contexts[run.id] = run_context(run, spec)
        task = spec.tasks[new.task_id]
        wanted = referenced_tasks(task.args) | referenced_tasks(task.expand or {})
        workloads.append(
            TryWorkload(
                try_id=new.try_id,
                ti_id=new.ti_id,
                task_id=new.task_id,
                map_index=new.map_index,
                try_number=new.try_number,
                max_tries=new.max_tries,
                fileloc=spec.fileloc,
                run=contexts[run.id],
                upstream_results=_upstream_results(conn, run.id, spec, wanted),
                execution_timeout_s=task.execution_timeout_s,
                queue=task.queue,
                log_path=new.log_path,
            )
        )
    return workloads


def _upstream_results(
    conn: Connection, run_id: int, spec: DagSpec, wanted: set[str]
) -> dict[str, Any]:
    """Results of the upstream tasks a task takes; a mapped task that expanded to nothing
    gives an empty list, so `sum(results)` works downstream."""
    if not wanted:
        return {}
    results = ti_store.results_of(conn, run_id, wanted)
    for task_id in wanted:
        if spec.tasks[task_id].is_mapped and results.get(task_id) is None:
            results[task_id] = []
    return results


def callback_workload(
    run: Row[Any], spec: DagSpec, callback: str, reason: str, log_path: str
) -> CallbackWorkload:
    return CallbackWorkload(
        callback="on_success" if callback == "on_success" else "on_failure",
        fileloc=spec.fileloc,
        run=run_context(run, spec),
        reason=reason,
        log_path=log_path,
    )
