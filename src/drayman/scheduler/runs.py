"""The scheduler loop's run steps: create the runs that fell due, start the queued ones.

How a run is made (ids, params, taken ids) is `drayman.run_creation`, shared with the CLI and
the web. Both steps read DagSpecs from the store and never import user code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from drayman.exceptions import DraymanError
from drayman.run_creation import create_scheduled_run, next_run_of
from drayman.spec import DagSpec
from drayman.store import dags as dag_store
from drayman.store import runs as run_store
from drayman.store.dags import NextRun
from drayman.store.engine import Connection
from drayman.timetables import RunInfo

log = logging.getLogger("drayman.scheduler")


def create_due_runs(conn: Connection, spec_of: Callable[[str, str], DagSpec], now: datetime) -> int:
    """Compute the next run of the DAGs that need it, then create the runs due at `now`;
    how many were created."""
    for dag in dag_store.dags_needing_next(conn):
        _compute_next(conn, dag.dag_id, dag.bundle_version, spec_of, now)
    created = 0
    for due in dag_store.due_dags(conn, now):
        spec = spec_of(due.dag_id, due.bundle_version)
        if create_scheduled_run(conn, due, spec, now):
            created += 1
            log.info(
                "run.created dag=%s logical_date=%s",
                due.dag_id,
                due.next_logical_date.isoformat(),
            )
        last = run_store.latest_scheduled_run(conn, due.dag_id)
        _store_next(conn, due.dag_id, next_run_of(spec, last, now), now)
    return created


def _compute_next(
    conn: Connection,
    dag_id: str,
    version: str,
    spec_of: Callable[[str, str], DagSpec],
    now: datetime,
) -> None:
    try:
        spec = spec_of(dag_id, version)
        last = run_store.latest_scheduled_run(conn, dag_id)
        nxt = next_run_of(spec, last, now)
    except DraymanError as exc:
        log.error("dag.schedule_error dag=%s: %s", dag_id, exc)
        nxt = None
    _store_next(conn, dag_id, nxt, now)


def _store_next(conn: Connection, dag_id: str, info: RunInfo | None, now: datetime) -> None:
    nxt = None
    if info is not None:
        nxt = NextRun(
            info.logical_date, info.data_interval_start, info.data_interval_end, info.run_after
        )
    dag_store.set_next_run(conn, dag_id, nxt, now)


def start_queued_runs(
    conn: Connection, spec_of: Callable[[str, str], DagSpec], now: datetime
) -> list[Any]:
    """Start the QUEUED runs, oldest first, that their DAG's max_active_runs allows; the runs
    started (their rows as they were queued)."""
    waiting = run_store.runs_to_start(conn)
    if not waiting:
        return []
    running = run_store.running_counts(conn)
    started = []
    for run in waiting:
        spec = spec_of(run.dag_id, run.bundle_version)
        if running.get(run.dag_id, 0) >= spec.max_active_runs:
            continue
        run_store.start_run(conn, run, spec, now)
        running[run.dag_id] = running.get(run.dag_id, 0) + 1
        started.append(run)
        log.info(
            "run.started dag=%s run=%s bundle=%s",
            run.dag_id,
            run.run_id,
            run.bundle_version[:12],
        )
    return started
