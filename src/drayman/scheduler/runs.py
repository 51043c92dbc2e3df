"""Creating DAG runs: scheduled ones as they fall due, manual triggers, and backfills.

The CLI and the web call `trigger` and `backfill`; the scheduler loop calls `create_due_runs`.
All of them read DagSpecs from the store and never import user code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select

from drayman.conf import DEFAULT_LIMITS, ConfLimits, check_conf, validate_conf
from drayman.exceptions import ConflictError, NotFoundError, ParamsError
from drayman.run_ids import check_manual_run_id
from drayman.spec import DagSpec
from drayman.states import RunType
from drayman.store import dags as dag_store
from drayman.store import runs as run_store
from drayman.store.dags import DueDag
from drayman.store.rows import DagRow, DagRunRow
from drayman.store.schema import dag_run
from drayman.timetables import RunInfo, Timetable, parse_schedule

log = logging.getLogger("drayman.scheduler")


def _aware(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def next_run_of(spec: DagSpec, last: DagRunRow | None, now: datetime) -> RunInfo | None:
    """The run that follows `last` (a dag_run row), per the DAG's timetable."""
    timetable = parse_schedule(spec.schedule, spec.timezone)
    previous = None
    if last is not None:
        previous = RunInfo(
            logical_date=last.logical_date,
            data_interval_start=last.data_interval_start,
            data_interval_end=last.data_interval_end,
            run_after=last.run_after,
        )
    return timetable.next_run(
        previous,
        start_date=_aware(spec.start_date),
        end_date=_aware(spec.end_date),
        catchup=spec.catchup,
        now=now,
    )


def _defined_dag(conn: Connection, dag_id: str) -> DagRow:
    """The DAG's row, if its newest bundle still defines it: deleted code must never run."""
    row = dag_store.get_dag(conn, dag_id)
    if not row.is_active:
        raise NotFoundError(
            f"DAG {dag_id!r} is no longer defined in the DAG folder (its file was deleted or "
            "no longer defines it); `drayman dags list` shows the DAGs there are"
        )
    return row


def trigger(
    conn: Connection,
    dag_id: str,
    *,
    conf: dict[str, Any] | None,
    triggered_by: str,
    now: datetime,
    run_id: str | None = None,
    logical_date: datetime | None = None,
    limits: ConfLimits = DEFAULT_LIMITS,
) -> str:
    """Create a manual run of the DAG's newest version. Returns its run id.

    A manual run's logical date is the moment it was triggered (or the one given), and its
    data interval is that instant: it processes "now", not a scheduled interval. The CLI, the
    pages and the API all come here, so a conf (see `drayman.conf`) and a run id (see
    `drayman.run_ids`) are checked the same way wherever they come from, before any write.
    """
    if run_id is not None:
        check_manual_run_id(run_id)
    conf = {} if conf is None else conf
    check_conf(conf, limits)
    row = _defined_dag(conn, dag_id)
    spec = dag_store.load_spec(conn, dag_id, row.bundle_version)
    try:
        params = validate_conf(spec.params, conf)
    except ParamsError as exc:
        raise ParamsError(f"DAG {dag_id!r}: {exc}", field=exc.field) from exc
    when = logical_date or now
    run_id = run_id or run_store.run_id_for(RunType.MANUAL, when)
    run_store.create_run(
        conn,
        dag_id=dag_id,
        run_id=run_id,
        run_type=RunType.MANUAL,
        bundle_version=row.bundle_version,
        logical_date=when,
        data_interval_start=when,
        data_interval_end=when,
        run_after=now,
        conf=conf,
        params=params,
        triggered_by=triggered_by,
        now=now,
    )
    return run_id


@dataclass(frozen=True)
class Backfill:
    """What `backfill` did: the runs it created, what it left alone, and why none if none."""

    created: list[str]
    existing: int  # intervals in the range that already had a run
    not_ended: list[RunInfo]  # intervals whose data interval had not ended: not created
    why_none: str | None  # when nothing was created: why, in words a user can act on


def backfill(
    conn: Connection,
    dag_id: str,
    *,
    start: datetime,
    end: datetime,
    triggered_by: str,
    now: datetime,
    include_future: bool = False,
) -> Backfill:
    """Create a backfill run for every scheduled interval whose logical date is in [start, end].

    Intervals that already have a run are left alone, and so, unless `include_future`, are
    intervals whose data interval has not ended at `now`: their data is not all there yet.
    """
    row = _defined_dag(conn, dag_id)
    spec = dag_store.load_spec(conn, dag_id, row.bundle_version)
    timetable = parse_schedule(spec.schedule, spec.timezone)
    existing = set(
        conn.execute(
            select(dag_run.c.logical_date).where(
                dag_run.c.dag_id == dag_id,
                dag_run.c.logical_date >= start,
                dag_run.c.logical_date <= end,
            )
        ).scalars()
    )
    params = validate_conf(spec.params, {})
    # the DAG's start_date anchors an interval schedule's grid: backfilled intervals are the
    # ones the scheduler would have made, so an existing run of the same interval is found
    intervals = timetable.runs_between(start, end, start_date=_aware(spec.start_date))
    missing = [info for info in intervals if info.logical_date not in existing]
    not_ended = [] if include_future else [i for i in missing if i.data_interval_end > now]
    created = [
        _create_backfill_run(conn, row, info, params, triggered_by=triggered_by, now=now)
        for info in missing
        if info not in not_ended
    ]
    skipped = len(intervals) - len(missing)
    why = None
    if not created:
        why = _why_none(spec, timetable, end, len(intervals), skipped)
        why = why or _why_not_ended(not_ended, len(intervals), skipped)
    return Backfill(created, skipped, not_ended, why)


def _create_backfill_run(
    conn: Connection,
    row: DagRow,
    info: RunInfo,
    params: dict[str, Any],
    *,
    triggered_by: str,
    now: datetime,
) -> str:
    run_id = run_store.run_id_for(RunType.BACKFILL, info.logical_date)
    run_store.create_run(
        conn,
        dag_id=row.dag_id,
        run_id=run_id,
        run_type=RunType.BACKFILL,
        bundle_version=row.bundle_version,
        logical_date=info.logical_date,
        data_interval_start=info.data_interval_start,
        data_interval_end=info.data_interval_end,
        run_after=now,
        conf={},
        params=params,
        triggered_by=triggered_by,
        now=now,
    )
    return run_id


def _why_none(
    spec: DagSpec, timetable: Timetable, end: datetime, intervals: int, existing: int
) -> str | None:
    """Why a range gave no intervals, or none without a run; None if some have not ended."""
    if spec.schedule is None:
        return "the DAG has no schedule (manual only): `drayman dags trigger` makes a run"
    start_date = _aware(spec.start_date)
    if not intervals and start_date is not None and end < start_date:
        return f"the range ends before the DAG's start_date {start_date.isoformat()}"
    if not intervals:
        return f"no interval of its schedule ({timetable.describe()}) starts in the range"
    if existing >= intervals:
        return f"every interval in the range already has a run ({intervals})"
    return None


def _why_not_ended(not_ended: list[RunInfo], intervals: int, existing: int) -> str:
    first = not_ended[0].data_interval_end.astimezone(UTC).isoformat()
    had = f"{existing} already have a run and " if existing else ""
    return (
        f"of the range's {intervals} intervals, {had}{len(not_ended)} have not ended yet (the "
        f"first ends {first}): --include-future creates their runs now"
    )


def create_scheduled_run(
    conn: Connection, dag_row: DueDag, spec: DagSpec, now: datetime
) -> str | None:
    """Create the run a DAG's stored next_* fields describe; None if its id is taken (logged:
    a run of that id already exists, so this interval gets no run of its own)."""
    run_id = run_store.run_id_for(RunType.SCHEDULED, dag_row.next_logical_date)
    try:
        run_store.create_run(
            conn,
            dag_id=dag_row.dag_id,
            run_id=run_id,
            run_type=RunType.SCHEDULED,
            bundle_version=dag_row.bundle_version,
            logical_date=dag_row.next_logical_date,
            data_interval_start=dag_row.next_data_interval_start,
            data_interval_end=dag_row.next_data_interval_end,
            run_after=dag_row.next_run_after,
            conf={},
            params=validate_conf(spec.params, {}),
            triggered_by="scheduler",
            now=now,
        )
    except ConflictError:
        _report_taken(conn, dag_row.dag_id, run_id)
        return None
    return run_id


def _report_taken(conn: Connection, dag_id: str, run_id: str) -> None:
    """Say why a due run was not made. Another scheduler making it first is the design (the
    unique run id is the lock); any other run holding the id is a problem an operator must
    see: that interval gets no scheduled run."""
    taken_by = conn.execute(
        select(dag_run.c.run_type, dag_run.c.triggered_by).where(
            dag_run.c.dag_id == dag_id, dag_run.c.run_id == run_id
        )
    ).first()
    # not visible (MariaDB's snapshot of a concurrent insert): another scheduler's, too
    if taken_by is None or taken_by.run_type == RunType.SCHEDULED:
        log.debug("run.exists dag=%s run_id=%s: made by another scheduler", dag_id, run_id)
        return
    log.warning(
        "run.id_taken dag=%s run_id=%s taken_by=%s: a %s run already has this id, so the "
        "scheduled run of this interval was not created",
        dag_id,
        run_id,
        taken_by.triggered_by,
        taken_by.run_type,
    )
