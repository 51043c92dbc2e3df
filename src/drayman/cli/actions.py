"""One shape for the commands that change a run by hand (`tasks clear`, `runs clear`,
`tasks mark`): preview, confirm on a terminal, apply in one transaction, ring the doorbell.

The store functions (`store/actions.py`) decide; this only talks to the person.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import click

from drayman.cli.common import load_settings, open_store, print_json

if TYPE_CHECKING:
    from drayman.store.actions import TIKey
    from drayman.store.audit import Event
    from drayman.store.engine import Connection

# (conn, now, dry_run) -> the task instances changed (or, dry, that would be)
Action = Callable[["Connection", datetime, bool], "list[TIKey]"]


def run_action(
    action: Action,
    *,
    verb: str,
    past: str,
    dag_id: str,
    run_id: str,
    dry_run: bool,
    confirm: bool,
    as_json: bool,
    event: Event,
) -> None:
    """Apply `action` with its audit `event` (one transaction) and report what it changed.

    With `confirm` (no --yes) and a terminal on stdin, the person sees the task instances
    first and answers; a script (stdin not a terminal) is never held up by a question.
    """
    from drayman.store import audit
    from drayman.wakeup import wake_schedulers

    settings = load_settings()
    store = open_store(settings)
    if confirm and not dry_run and sys.stdin.isatty():
        with store.read() as conn:
            preview = action(conn, store.now(), True)
        if not preview:
            _report(preview, (verb, past), dag_id, run_id, dry_run=False, as_json=as_json)
            return
        _print_keys(preview)
        click.confirm(f"{verb} these {len(preview)} task instance(s)?", abort=True)
    if dry_run:
        with store.read() as conn:
            keys = action(conn, store.now(), True)
    else:
        with store.begin() as conn:
            now = store.now()
            keys = action(conn, now, False)
            audit.record_event(conn, event, now, task_instances=len(keys))
        if keys:
            wake_schedulers(settings)
    _report(keys, (verb, past), dag_id, run_id, dry_run=dry_run, as_json=as_json)


def _report(
    keys: Sequence[TIKey],
    verbs: tuple[str, str],
    dag_id: str,
    run_id: str,
    *,
    dry_run: bool,
    as_json: bool,
) -> None:
    if as_json:
        print_json(
            {
                "dag_id": dag_id,
                "run_id": run_id,
                "dry_run": dry_run,
                "task_instances": [{"task_id": k.task_id, "map_index": k.map_index} for k in keys],
            }
        )
        return
    verb, past = verbs
    if not keys:
        click.echo(f"nothing to {verb} in {dag_id} run {run_id}")
        return
    done = f"would {verb}" if dry_run else past
    click.echo(f"{done} {len(keys)} task instance(s) of {dag_id} run {run_id}:")
    _print_keys(keys)


def _print_keys(keys: Sequence[TIKey]) -> None:
    for key in keys:
        click.echo(f"  {key.task_id if key.map_index < 0 else f'{key.task_id}[{key.map_index}]'}")
