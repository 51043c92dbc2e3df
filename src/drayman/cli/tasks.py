"""`drayman tasks ...`: run one task for testing."""

from __future__ import annotations

import click

from drayman.cli.common import load_settings, parse_conf, parse_when


@click.group("tasks")
def tasks() -> None:
    """Run one task for testing."""


@tasks.command("test")
@click.argument("dag_id")
@click.argument("task_id")
@click.option("--conf", help="Run configuration as a JSON object.")
@click.option("--logical-date", help="ISO 8601 logical date (default: now).")
@click.option("--map-index", default=-1, show_default=True, help="Element of a mapped task.")
def test_cmd(
    dag_id: str, task_id: str, conf: str | None, logical_date: str | None, map_index: int
) -> None:
    """Run one try of TASK_ID right here, ignoring its dependencies, logs on the terminal.

    Nothing is recorded in the metadata database. Exit code 0 when the task succeeds.
    """
    from drayman.cli.testing import run_task_once

    when = parse_when(logical_date, "--logical-date") if logical_date else None
    ok = run_task_once(
        load_settings(),
        dag_id,
        task_id,
        conf=parse_conf(conf),
        logical_date=when,
        map_index=map_index,
    )
    raise SystemExit(0 if ok else 1)
