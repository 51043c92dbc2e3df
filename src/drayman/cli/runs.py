"""`drayman runs ...`: list runs, and show every task and try of one run."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from drayman.cli.actions import run_action
from drayman.cli.common import (
    cli_actor,
    duration,
    iso,
    json_option,
    load_settings,
    open_store,
    print_json,
    print_table,
    who,
)
from drayman.exceptions import NotFoundError

if TYPE_CHECKING:
    from drayman.store.actions import TIKey
    from drayman.store.engine import Connection


@click.group("runs")
def runs() -> None:
    """List DAG runs, show every task and try of one, clear one."""


@runs.command("list")
@click.option("--dag", "dag_id", help="Only runs of this DAG.")
@click.option("--state", type=click.Choice(["queued", "running", "success", "failed"]))
@click.option("--limit", default=25, show_default=True, type=click.IntRange(1, 10_000))
@json_option
def list_runs(dag_id: str | None, state: str | None, limit: int, as_json: bool) -> None:
    """The newest runs first."""
    from drayman.store import runs as run_store

    store = open_store(load_settings())
    with store.read() as conn:
        rows = run_store.list_runs(conn, dag_id=dag_id, state=state, limit=limit)
    if as_json:
        print_json([_run_json(r) for r in rows])
        return
    print_table(
        ["dag_id", "run_id", "type", "state", "logical date (UTC)", "duration", "bundle"],
        [
            [
                r.dag_id,
                r.run_id,
                r.run_type,
                r.state,
                iso(r.logical_date),
                duration(r.start_date, r.end_date),
                r.bundle_version[:12],
            ]
            for r in rows
        ],
    )


def _run_json(r: Any) -> dict[str, Any]:
    return {
        "dag_id": r.dag_id,
        "run_id": r.run_id,
        "run_type": r.run_type,
        "state": r.state,
        "bundle_version": r.bundle_version,
        "logical_date": iso(r.logical_date),
        "data_interval_start": iso(r.data_interval_start),
        "data_interval_end": iso(r.data_interval_end),
        "run_after": iso(r.run_after),
        "created_at": iso(r.created_at),
        "start_date": iso(r.start_date),
        "end_date": iso(r.end_date),
        "conf": json.loads(r.conf),
        "triggered_by": r.triggered_by,
    }


@runs.command("show")
@click.argument("run_id")
@click.option("--dag", "dag_id", help="The DAG, when several DAGs have a run with this id.")
@json_option
def show_run(run_id: str, dag_id: str | None, as_json: bool) -> None:
    """Every task of one run with each of its tries: state, host, pid, times, exit, log."""
    from drayman.store import runs as run_store
    from drayman.store import try_history

    settings = load_settings()
    store = open_store(settings)
    with store.read() as conn:
        run = _find_run(conn, run_store, run_id, dag_id)
        rows = try_history.tries_of_run(conn, run.id)
    if as_json:
        print_json({**_run_json(run), "task_instances": _tis_json(rows, settings.logs_folder)})
        return
    click.echo(
        f"{run.dag_id} {run.run_id}: {run.state} ({run.run_type}, bundle "
        f"{run.bundle_version[:12]}, {duration(run.start_date, run.end_date) or '-'})"
    )
    print_table(
        # the task instance's state first: marking or clearing changes it, not its tries'
        [
            "task",
            "state",
            "try",
            "try state",
            "host",
            "pid",
            "start (UTC)",
            "duration",
            "exit",
            "log",
        ],
        [
            [
                _label(r),
                r.ti_state,
                r.try_number or "",
                r.state or "",
                r.hostname,
                r.pid,
                iso(r.start_date),
                duration(r.start_date, r.end_date),
                _exit(r),
                str(settings.logs_folder / r.log_path) if r.log_path else "",
            ]
            for r in rows
        ],
    )
    for r in rows:
        if r.error:
            click.echo(f"{_label(r)} try {r.try_number}: {r.error}")


@runs.command("clear")
@click.argument("dag_id")
@click.argument("run_id")
@click.option(
    "--only-failed", "-f", is_flag=True, help="Only failed and upstream_failed task instances."
)
@click.option("--dry-run", is_flag=True, help="Print what would be cleared; change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
def clear_run(
    dag_id: str, run_id: str, only_failed: bool, dry_run: bool, yes: bool, as_json: bool
) -> None:
    """Clear every task of one run so that the whole run runs again.

    Old tries stay as history. On a terminal it asks first, unless --yes. Exit code 3 for an
    unknown DAG or run; 4 for a run that has not started.
    """
    from drayman.store import actions

    def clear(conn: Connection, now: datetime, dry: bool) -> list[TIKey]:
        return actions.clear_run(
            conn, dag_id, run_id, only_failed=only_failed, dry_run=dry, now=now, by=who()
        )

    from drayman.store.audit import AuditAction, Event, run_object

    event = Event(
        cli_actor(),
        AuditAction.RUN_CLEAR,
        *run_object(dag_id, run_id),
        {"only_failed": only_failed},
    )
    run_action(
        clear,
        event=event,
        verb="clear",
        past="cleared",
        dag_id=dag_id,
        run_id=run_id,
        dry_run=dry_run,
        confirm=not yes,
        as_json=as_json,
    )


def _find_run(conn: Any, run_store: Any, run_id: str, dag_id: str | None) -> Any:
    if dag_id:
        return run_store.get_run(conn, dag_id, run_id)
    found = run_store.find_runs(conn, run_id)
    if not found:
        raise NotFoundError(f"no run {run_id!r}; `drayman runs list` shows recent runs")
    if len(found) > 1:
        dags = ", ".join(sorted(r.dag_id for r in found))
        raise NotFoundError(f"run id {run_id!r} exists in several DAGs ({dags}): add --dag")
    return found[0]


def _label(r: Any) -> str:
    return r.task_id if r.map_index < 0 else f"{r.task_id}[{r.map_index}]"


def _exit(r: Any) -> str:
    if r.signal:
        return f"signal {r.signal}"
    return "" if r.exit_code is None else str(r.exit_code)


def _tis_json(rows: Any, logs_folder: Any) -> list[dict[str, Any]]:
    tis: dict[tuple[str, int], dict[str, Any]] = {}
    for r in rows:
        ti = tis.setdefault(
            (r.task_id, r.map_index),
            {
                "task_id": r.task_id,
                "map_index": r.map_index,
                "state": r.ti_state,
                "tries": [],
            },
        )
        if r.try_number is None:
            continue
        ti["tries"].append(
            {
                "try_number": r.try_number,
                "state": r.state,
                "hostname": r.hostname,
                "pid": r.pid,
                "queued_at": iso(r.queued_at),
                "start_date": iso(r.start_date),
                "end_date": iso(r.end_date),
                "exit_code": r.exit_code,
                "signal": r.signal,
                "error": r.error,
                "log_path": str(logs_folder / r.log_path) if r.log_path else None,
            }
        )
    return list(tis.values())
