"""Turning new tries into workloads: everything a worker needs, read from the store in bulk.

The same assembly serves the local executor (which is handed the workload whole) and remote
workers (which receive a try id and rebuild the workload here, from the store). A try whose
workload cannot be built fails alone, with the reason in its log (`fail_undispatchable`,
ADR 13); a remote worker claims a DAG callback here before it runs it (`claim_callback`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.exc import SQLAlchemyError

from drayman.retry import retry_delay_s
from drayman.spec import DagSpec, referenced_tasks
from drayman.states import RunState
from drayman.store import logs as log_store
from drayman.store import runs as run_store
from drayman.store import task_instances as ti_store
from drayman.store import tries as try_store
from drayman.store.rows import DagRunRow, all_as, one_as
from drayman.store.schema import dag_run
from drayman.store.tries import NewTry, RetrySubject
from drayman.workloads import (
    CallbackWorkload,
    RunContextData,
    TryOutcome,
    TryWorkload,
    dispatch_error,
    log_relpath,
)

SpecLookup = Callable[[str, str], DagSpec]


def _local_iso(value: datetime, tz: ZoneInfo) -> str:
    return value.astimezone(tz).isoformat()


def run_context(run: DagRunRow, spec: DagSpec) -> RunContextData:
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


_RUNS_BY_ID = select(dag_run).where(dag_run.c.id.in_(bindparam("b_ids", expanding=True)))


def runs_by_id(conn: Connection, run_ids: Sequence[int]) -> dict[int, DagRunRow]:
    if not run_ids:
        return {}
    rows = conn.execute(_RUNS_BY_ID, {"b_ids": sorted(set(run_ids))})
    return {run.id: run for run in all_as(DagRunRow, rows)}


@dataclass(frozen=True)
class Undispatchable:
    """A new try whose workload could not be built or sent: it fails with `error`."""

    try_id: int
    error: str


@dataclass
class Built:
    """The workloads of a batch of new tries, and the tries that could not have one."""

    workloads: list[TryWorkload] = field(default_factory=list)
    failed: list[Undispatchable] = field(default_factory=list)


def try_workloads(
    conn: Connection,
    tries: Sequence[NewTry],
    spec_of: SpecLookup,
    runs: Mapping[int, DagRunRow] | None = None,
) -> Built:
    """Workloads for new tries, with upstream results for Python tasks that take them.

    A try whose workload cannot be built (a stored conf that is not JSON or too deep to
    read, a task its DAG version lacks) is in `failed`, with why; the others are built.
    Database errors are not a try's fault: they propagate, and the transaction is retried.
    `runs` may hold the tries' run rows already (the scheduler caches them).
    """
    if runs is None:
        runs = runs_by_id(conn, [t.dag_run_id for t in tries])
    contexts: dict[int, RunContextData] = {}
    built = Built()
    for new in tries:
        try:
            built.workloads.append(_try_workload(conn, new, runs, contexts, spec_of))
        except SQLAlchemyError:
            raise
        except Exception as exc:
            built.failed.append(Undispatchable(new.try_id, dispatch_error(exc)))
    return built


def _try_workload(
    conn: Connection,
    new: NewTry,
    runs: Mapping[int, DagRunRow],
    contexts: dict[int, RunContextData],
    spec_of: SpecLookup,
) -> TryWorkload:
    run = runs[new.dag_run_id]
    spec = spec_of(run.dag_id, run.bundle_version)
    if run.id not in contexts:
        contexts[run.id] = run_context(run, spec)
    task = spec.tasks[new.task_id]
    wanted = referenced_tasks(task.args) | referenced_tasks(task.expand or {})
    return TryWorkload(
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


def fail_undispatchable(
    conn: Connection,
    failed: Sequence[Undispatchable],
    spec_of: SpecLookup,
    *,
    hostname: str,
    now: datetime,
) -> list[try_store.Recorded]:
    """Fail tries that could not be dispatched, the reason in their log in the store.

    Each is recorded like any failed try (fenced, retried by its task's policy) in the
    caller's transaction; its log, which no worker will write, is one line saying why, so
    `drayman tasks logs` and the web show it from any host.
    """
    if not failed:
        return []
    outcomes = [
        TryOutcome(
            try_id=item.try_id,
            succeeded=False,
            started_at=now,
            ended_at=now,
            hostname=hostname,
            error=item.error,
        )
        for item in failed
    ]
    delays = {
        subject.try_id: _retry_delay_or_zero(spec_of, subject)
        for subject in try_store.retry_subjects(conn, outcomes)
    }
    recorded = try_store.record_outcomes(conn, outcomes, retry_delays=delays)
    for item in failed:
        line = f"[drayman] not run: {item.error}\n"
        first = log_store.last_seq(conn, item.try_id) + 1
        log_store.append_chunks(conn, item.try_id, first, [line], now=now)
    return recorded


def _retry_delay_or_zero(spec_of: SpecLookup, subject: RetrySubject) -> float:
    """The task's retry delay, or 0 when its DAG version cannot say (what failed the try may
    be that very spec)."""
    try:
        return task_retry_delay_s(spec_of(subject.dag_id, subject.bundle_version), subject)
    except SQLAlchemyError:
        raise
    except Exception:
        return 0.0


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
    run: DagRunRow, spec: DagSpec, callback: str, reason: str, log_path: str
) -> CallbackWorkload:
    return CallbackWorkload(
        callback="on_success" if callback == "on_success" else "on_failure",
        fileloc=spec.fileloc,
        run=run_context(run, spec),
        reason=reason,
        log_path=log_path,
    )


def task_retry_delay_s(spec: DagSpec, subject: RetrySubject) -> float:
    """The wait before the next try after failed try `subject` (of a run of `spec`)."""
    task = spec.tasks[subject.task_id]
    return retry_delay_s(
        try_number=subject.try_number,
        delay_s=task.retry_delay_s,
        backoff=task.retry_backoff,
        max_delay_s=task.max_retry_delay_s,
        seed=subject.ti_id,
    )


def callback_log_path(run: DagRunRow, callback: str) -> str:
    return log_relpath(run.dag_id, run.run_id, f"_dag_{callback}", -1, 1)


@dataclass(frozen=True)
class CallbackClaim:
    """A remote worker's claim of a DAG callback: the workload to run, or why nothing runs."""

    workload: CallbackWorkload | None
    refusal: str = ""


def claim_callback(
    conn: Connection,
    dag_id: str,
    run_id: str,
    callback: str,
    spec_of: SpecLookup,
    *,
    now: datetime,
) -> CallbackClaim:
    """Claim the DAG-level callback of a finished run, rebuilt from the store.

    Nothing runs unless the run exists, finished in the state that calls `callback`
    (on_success after success, on_failure after failure), its DAG defines that callback,
    and no worker claimed this finish's callback before (`runs.claim_callback`, in the
    caller's transaction): a replayed, duplicated or forged message runs nothing. A
    callback whose workload cannot be built (a stored conf too deep to read) is refused
    before it is claimed.
    """
    found = conn.execute(
        select(dag_run).where(dag_run.c.dag_id == dag_id, dag_run.c.run_id == run_id)
    ).first()
    run = None if found is None else one_as(DagRunRow, found)
    if run is None or callback not in ("on_success", "on_failure"):
        return CallbackClaim(None, "no such run or callback")
    wanted = RunState.SUCCESS if callback == "on_success" else RunState.FAILED
    if run.state != wanted:
        return CallbackClaim(None, f"the run is {run.state}, not {wanted}")
    spec = spec_of(run.dag_id, run.bundle_version)
    if callback not in spec.callbacks:
        return CallbackClaim(None, "the DAG defines no such callback")
    path = callback_log_path(run, callback)
    try:
        workload = callback_workload(run, spec, callback, str(wanted), path)
    except Exception as exc:
        return CallbackClaim(None, dispatch_error(exc))
    if not run_store.claim_callback(conn, run.id, wanted, now):
        return CallbackClaim(None, "claimed already: it ran or runs elsewhere")
    return CallbackClaim(workload)
