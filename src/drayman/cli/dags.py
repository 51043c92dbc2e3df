"""`drayman dags ...`: list, trigger, pause, next-runs, test, backfill, parse, errors."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import click

from drayman.cli.common import (
    cli_actor,
    iso,
    json_option,
    load_settings,
    open_store,
    parse_conf,
    parse_when,
    print_json,
    print_table,
    who,
)
from drayman.cli.errors import EXIT_FAILED
from drayman.exceptions import BundleError


@click.group("dags")
def dags() -> None:
    """List, trigger, pause, test and backfill DAGs."""


@dags.command("list")
@click.option("--all", "include_inactive", is_flag=True, help="Include DAGs no longer defined.")
@json_option
def list_dags(include_inactive: bool, as_json: bool) -> None:
    """Every DAG with its schedule, timezone, next run and state; import errors after."""
    from drayman.store import bundles as bundle_store
    from drayman.store import dags as dag_store

    settings = load_settings()
    store = open_store(settings)
    with store.read() as conn:
        rows = dag_store.list_dags(conn, include_inactive=include_inactive)
        version = bundle_store.latest_deployed_version(conn)
        errors = dag_store.import_errors(conn, version) if version else []
    if as_json:
        print_json([_dag_json(row) for row in rows])
        return
    if not rows and version is None:
        click.echo(
            "no DAGs yet: start `drayman standalone` or `drayman scheduler`, "
            "or run `drayman dags parse` to read the DAG folder now"
        )
    else:
        print_table(
            ["dag_id", "schedule", "timezone", "paused", "next run (local)", "tags", "file"],
            [
                [
                    row.dag_id,
                    row.schedule or "manual",
                    row.timezone,
                    "yes" if row.is_paused else "no",
                    _local(row.next_run_after, row.timezone),
                    ",".join(json.loads(row.tags)),
                    row.fileloc,
                ]
                for row in rows
            ],
        )
    for error in errors:
        click.echo(f"import error: {_located(error)}", err=True)


def _dag_json(row: Any) -> dict[str, Any]:
    return {
        "dag_id": row.dag_id,
        "schedule": row.schedule,
        "timezone": row.timezone,
        "is_paused": row.is_paused,
        "is_active": row.is_active,
        "tags": json.loads(row.tags),
        "description": row.description,
        "fileloc": row.fileloc,
        "bundle_version": row.bundle_version,
        "next_run_after": iso(row.next_run_after),
        "next_logical_date": iso(row.next_logical_date),
        "max_active_runs": row.max_active_runs,
        "max_active_tasks": row.max_active_tasks,
    }


def _local(value: datetime | None, timezone: str) -> str:
    if value is None:
        return ""
    return value.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M %Z")


exit_zero_option = click.option(
    "--exit-zero",
    is_flag=True,
    help="Exit 0 even when a DAG file has an import error (report only, do not gate).",
)


def _located(error: Any) -> str:
    """`file.py:12: message`: the location once, in front."""
    where = f"{error.fileloc}:{error.lineno}" if error.lineno else error.fileloc
    if error.message.startswith(f"{where}: "):  # stored before the parser dropped the prefix
        return str(error.message)
    return f"{where}: {error.message}"


def _fail_on_import_errors(count: int, exit_zero: bool) -> None:
    """Exit 1 when a DAG file failed to import, so that CI can gate on it."""
    if count and not exit_zero:
        files = (
            "1 DAG file has an import error"
            if count == 1
            else f"{count} DAG files have import errors"
        )
        click.echo(f"error: {files} (--exit-zero to report without failing)", err=True)
        raise SystemExit(EXIT_FAILED)


@dags.command("errors")
@exit_zero_option
@json_option
def errors_cmd(exit_zero: bool, as_json: bool) -> None:
    """Import errors of the newest bundle: file, line and message.

    Exits 1 when there is any (0 with --exit-zero), so CI can gate on it.
    """
    rows = _import_errors(open_store(load_settings()))
    if as_json:
        print_json([{"fileloc": r.fileloc, "lineno": r.lineno, "message": r.message} for r in rows])
    elif not rows:
        click.echo("no import errors")
    else:
        click.echo("\n".join(_located(r) for r in rows))
    _fail_on_import_errors(len(rows), exit_zero)


def _import_errors(store: Any) -> list[Any]:
    from drayman.store import bundles as bundle_store
    from drayman.store import dags as dag_store

    with store.read() as conn:
        version = bundle_store.latest_deployed_version(conn)
        return dag_store.import_errors(conn, version) if version else []


@dags.command("parse")
@exit_zero_option
def parse_cmd(exit_zero: bool) -> None:
    """Pack and parse the DAG folder now, publishing a new bundle version if it changed.

    Prints every import error of the folder's bundle and exits 1 if there is any (0 with
    --exit-zero), so CI can gate on it.
    """
    from drayman.dag_processor.processor import DagProcessor
    from drayman.wakeup import wake_schedulers

    settings = load_settings()
    store = open_store(settings)
    click.echo(f"parsing {settings.dags_folder} ...", err=True)
    # the processor's log lines are for the scheduler's log; here each import error is printed
    # once below (and a folder problem raised), not a second time by logging's last resort
    logging.getLogger("drayman").addHandler(logging.NullHandler())
    processor = DagProcessor(settings, store)
    version = processor.tick()
    if processor.problem is not None:
        raise BundleError(processor.problem)
    if version is None:
        click.echo("DAG folder unchanged: nothing to publish")
    else:
        wake_schedulers(settings)
        click.echo(f"published bundle {version[:12]}")
    errors = _import_errors(store)
    for error in errors:
        click.echo(f"import error: {_located(error)}", err=True)
    _fail_on_import_errors(len(errors), exit_zero)


@dags.command("trigger")
@click.argument("dag_id")
@click.option("--conf", help="Run configuration as a JSON object; validated against params.")
@click.option("--run-id", help="A run id of your own (default: manual__<time>).")
@click.option("--logical-date", help="ISO 8601 logical date (default: now).")
@json_option
def trigger_cmd(
    dag_id: str, conf: str | None, run_id: str | None, logical_date: str | None, as_json: bool
) -> None:
    """Create a manual run of DAG_ID; a running scheduler starts it at once."""
    from drayman import run_creation
    from drayman.conf import ConfLimits
    from drayman.store import audit
    from drayman.wakeup import wake_schedulers

    settings = load_settings()
    run_conf = parse_conf(conf, settings)
    when = parse_when(logical_date, "--logical-date") if logical_date else None
    store = open_store(settings)
    with store.begin() as conn:
        now = store.now()
        new_id = run_creation.trigger(
            conn,
            dag_id,
            conf=run_conf,
            triggered_by=who(),
            now=now,
            run_id=run_id,
            logical_date=when,
            limits=ConfLimits.of(settings),
        )
        audit.record_trigger(conn, cli_actor(), dag_id, new_id, run_conf, now)
    wake_schedulers(settings)
    if as_json:
        print_json({"dag_id": dag_id, "run_id": new_id})
    else:
        click.echo(f"triggered {dag_id} run {new_id}")


@dags.command("pause")
@click.argument("dag_id")
def pause_cmd(dag_id: str) -> None:
    """Stop creating scheduled runs of DAG_ID (running ones finish)."""
    _set_paused(dag_id, True)


@dags.command("unpause")
@click.argument("dag_id")
def unpause_cmd(dag_id: str) -> None:
    """Resume scheduling DAG_ID (with catchup=False, missed intervals are skipped)."""
    _set_paused(dag_id, False)


def _set_paused(dag_id: str, paused: bool) -> None:
    from drayman.store import audit
    from drayman.store import dags as dag_store
    from drayman.wakeup import wake_schedulers

    settings = load_settings()
    store = open_store(settings)
    with store.begin() as conn:
        now = store.now()
        dag_store.set_paused(conn, dag_id, paused, now)
        audit.record_pause(conn, cli_actor(), dag_id, paused, now)
    wake_schedulers(settings)
    click.echo(f"{dag_id} {'paused' if paused else 'unpaused'}")


@dags.command("next-runs")
@click.argument("dag_id")
@click.option("-n", "count", default=10, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--after", help="ISO 8601 time to start from (default: now).")
@json_option
def next_runs_cmd(dag_id: str, count: int, after: str | None, as_json: bool) -> None:
    """The next N scheduled runs, in the DAG's timezone and UTC, marking DST changes."""
    from drayman.store import dags as dag_store
    from drayman.timetables import dst_change, parse_schedule

    store = open_store(load_settings())
    with store.read() as conn:
        row = dag_store.get_dag(conn, dag_id)
        spec = dag_store.load_spec(conn, dag_id, row.bundle_version)
    start = parse_when(after, "--after") if after else datetime.now(UTC)
    timetable = parse_schedule(spec.schedule, spec.timezone)
    runs = timetable.upcoming(
        start,
        count,
        start_date=datetime.fromisoformat(spec.start_date) if spec.start_date else None,
        end_date=datetime.fromisoformat(spec.end_date) if spec.end_date else None,
    )
    tz = ZoneInfo(spec.timezone)
    items, previous = [], None
    for info in runs:
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
    if as_json:
        print_json(items)
        return
    if not items:
        click.echo(f"{dag_id} has no upcoming scheduled runs ({timetable.describe()})")
        return
    click.echo(f"{dag_id}: {timetable.describe()}")
    local_and_utc = spec.timezone != "UTC"  # a UTC DAG needs its times once
    headers = [f"run after ({spec.timezone})"]
    headers += ["run after (UTC)"] if local_and_utc else []
    rows: list[list[Any]] = []
    for i in items:
        cells = [i["run_after"]] + ([i["run_after_utc"]] if local_and_utc else [])
        cells += [f"{i['data_interval_start']} .. {i['data_interval_end']}", i["dst_change"] or ""]
        rows.append(cells)
    print_table([*headers, "data interval", "note"], rows)


@dags.command("backfill")
@click.argument("dag_id")
@click.option("--start", "start_text", required=True, help="First logical date (ISO 8601).")
@click.option("--end", "end_text", required=True, help="Last logical date (ISO 8601).")
@click.option(
    "--include-future",
    is_flag=True,
    help="Also create runs for intervals that have not ended yet (their data may be partial).",
)
def backfill_cmd(dag_id: str, start_text: str, end_text: str, include_future: bool) -> None:
    """Create runs for every scheduled interval whose logical date is in [start, end].

    Intervals that already have a run are skipped, and so are intervals that have not ended
    yet unless --include-future. When no run is created, it says why.
    """
    from drayman import run_creation
    from drayman.wakeup import wake_schedulers

    settings = load_settings()
    store = open_store(settings)
    start, end = parse_when(start_text, "--start"), parse_when(end_text, "--end")
    if end < start:
        raise click.BadParameter("must not be before --start", param_hint="--end")
    from drayman.store import audit

    with store.begin() as conn:
        now = store.now()
        done = run_creation.backfill(
            conn,
            dag_id,
            start=start,
            end=end,
            triggered_by=who(),
            now=now,
            include_future=include_future,
        )
        audit.record(
            conn,
            actor=cli_actor(),
            action=audit.AuditAction.DAG_BACKFILL,
            now=now,
            object_type="dag",
            object_id=dag_id,
            detail={"start": start, "end": end, "runs": len(done.created)},
        )
    wake_schedulers(settings)
    created = done.created
    if not created:
        click.echo(f"created 0 backfill runs of {dag_id}: {done.why_none}")
        return
    click.echo(f"created {len(created)} backfill runs of {dag_id}: {created[0]} .. {created[-1]}")
    if done.not_ended:
        first = done.not_ended[0].data_interval_end.astimezone(UTC).isoformat()
        click.echo(
            f"skipped {len(done.not_ended)} intervals that have not ended yet (the first ends "
            f"{first}): --include-future creates their runs now"
        )


@dags.command("test")
@click.argument("dag_id")
@click.option("--conf", help="Run configuration as a JSON object.")
@click.option("--logical-date", help="ISO 8601 logical date (default: now).")
def test_cmd(dag_id: str, conf: str | None, logical_date: str | None) -> None:
    """Run DAG_ID once, right here: no scheduler, a throwaway database, logs on the terminal.

    Retries happen at once instead of after their delay. Exit code 0 when the run succeeds.
    """
    from drayman.cli.testing import run_dag_once

    settings = load_settings()
    when = parse_when(logical_date, "--logical-date") if logical_date else None
    ok = run_dag_once(settings, dag_id, conf=parse_conf(conf, settings), logical_date=when)
    raise SystemExit(0 if ok else 1)
