"""`drayman tasks ...`: run one task for testing; print (and follow) one try's log; clear or
mark task instances of a run by hand."""

from __future__ import annotations

import codecs
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from drayman.cli.actions import run_action
from drayman.cli.common import (
    cli_actor,
    json_option,
    load_settings,
    open_store,
    parse_conf,
    parse_when,
    who,
)
from drayman.exceptions import NotFoundError

if TYPE_CHECKING:
    from drayman.store.actions import TIKey
    from drayman.store.engine import Connection, Store

FOLLOW_POLL_S = 0.3
CHUNKS_PER_READ = 200


@click.group("tasks")
def tasks() -> None:
    """Run one task for testing; print one try's log; clear or mark task instances."""


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

    settings = load_settings()
    when = parse_when(logical_date, "--logical-date") if logical_date else None
    ok = run_task_once(
        settings,
        dag_id,
        task_id,
        conf=parse_conf(conf, settings),
        logical_date=when,
        map_index=map_index,
    )
    raise SystemExit(0 if ok else 1)


@tasks.command("logs")
@click.argument("dag_id")
@click.argument("run_id")
@click.argument("task_id")
@click.option("--map-index", default=-1, show_default=True, help="Element of a mapped task.")
@click.option("--try", "try_number", type=click.IntRange(1), help="Which try (default: newest).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the try has ended.")
def logs_cmd(
    dag_id: str, run_id: str, task_id: str, map_index: int, try_number: int | None, follow: bool
) -> None:
    """Print one try's log: shipped to the database by a remote worker, else the local file.

    With --follow, new output is printed as it comes (like `tail -f`) until the try has
    ended; then the command exits 0. Exit code 3 for an unknown run, task or try.
    """
    from drayman.store import runs as run_store
    from drayman.store import try_history

    settings = load_settings()
    store = open_store(settings)
    with store.read() as conn:
        run = run_store.get_run(conn, dag_id, run_id)
        row = try_history.find_try(conn, run.id, task_id, map_index, try_number)
    path = settings.logs_folder / row.log_path if row.log_path else None
    reader = _LogReader(store, row.id, path)
    while True:
        finished = reader.tick()
        if finished or not follow:
            break
        time.sleep(FOLLOW_POLL_S)
    if not reader.printed and not follow:
        where = f"not at {path}" if path else "no log file"
        host = f" (try {row.try_number} ran on {row.hostname})" if row.hostname else ""
        raise NotFoundError(f"no log of this try in the database, and {where}{host}")


class _LogReader:
    """Prints a try's log from where it left off: database chunks, else the local file.

    The try's state is read before its log, so once a tick saw the try ended, that tick also
    printed the end of the log (a worker stores the last chunk before the outcome).
    """

    def __init__(self, store: Store, try_id: int, path: Path | None) -> None:
        self.store = store
        self.try_id = try_id
        self.path = path
        self.seq = -1  # the last chunk printed
        self.offset = 0  # bytes of the local file printed
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    @property
    def printed(self) -> bool:
        return self.seq >= 0 or self.offset > 0

    def tick(self) -> bool:
        """Print what is new; whether the try had ended (so nothing more will come)."""
        from drayman.store import logs as log_store
        from drayman.store import tries as try_store
        from drayman.store import try_history

        with self.store.read() as conn:
            ended = try_history.try_state(conn, self.try_id) not in try_store.UNFINISHED
            while self.offset == 0:  # once the file is being printed, it stays the source
                chunks = log_store.read_chunks(conn, self.try_id, self.seq, limit=CHUNKS_PER_READ)
                if chunks:
                    click.echo("".join(text for _, text in chunks), nl=False)
                    self.seq = chunks[-1][0]
                if len(chunks) < CHUNKS_PER_READ:
                    break
        if self.seq < 0 and self.path is not None:
            self._print_file(self.path, final=ended)
        return ended

    def _print_file(self, path: Path, *, final: bool) -> None:
        try:
            with path.open("rb") as file:
                file.seek(self.offset)
                data = file.read()
        except FileNotFoundError:
            return
        self.offset += len(data)
        text = self._decoder.decode(data, final=final)
        if text:
            click.echo(text, nl=False)


@tasks.command("clear")
@click.argument("dag_id")
@click.argument("run_id")
@click.argument("task_ids", nargs=-1)
@click.option("--downstream", "-d", is_flag=True, help="Also every task downstream of them.")
@click.option("--upstream", "-u", is_flag=True, help="Also every task upstream of them.")
@click.option(
    "--only-failed", "-f", is_flag=True, help="Only failed and upstream_failed task instances."
)
@click.option("--map-index", type=int, help="Only this element of the named mapped tasks.")
@click.option("--dry-run", is_flag=True, help="Print what would be cleared; change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
def clear_cmd(
    dag_id: str,
    run_id: str,
    task_ids: tuple[str, ...],
    downstream: bool,
    upstream: bool,
    only_failed: bool,
    map_index: int | None,
    dry_run: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """Clear task instances of one run so that they run again (every task if none is named).

    Old tries stay as history; the try numbers continue and each cleared task gets its
    retries again. A finished run runs again. On a terminal it asks first, unless --yes.
    Exit code 3 for an unknown DAG, run or task; 4 for a run that has not started.
    """
    from drayman.store import actions

    def clear(conn: Connection, now: datetime, dry: bool) -> list[TIKey]:
        if not task_ids:
            return actions.clear_run(
                conn, dag_id, run_id, only_failed=only_failed, dry_run=dry, now=now, by=who()
            )
        return actions.clear_task_instances(
            conn,
            dag_id,
            run_id,
            task_ids,
            downstream=downstream,
            upstream=upstream,
            only_failed=only_failed,
            map_index=map_index,
            dry_run=dry,
            now=now,
            by=who(),
        )

    from drayman.store.audit import AuditAction, Event, run_object

    one = task_ids[0] if len(task_ids) == 1 else None
    options = {"downstream": downstream, "upstream": upstream, "only_failed": only_failed}
    event = Event(
        cli_actor(),
        AuditAction.TASK_CLEAR if task_ids else AuditAction.RUN_CLEAR,
        *run_object(dag_id, run_id, one),
        {**options, "map_index": map_index, "tasks": list(task_ids)},
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


@tasks.command("mark")
@click.argument("dag_id")
@click.argument("run_id")
@click.argument("task_id")
@click.option("--state", required=True, type=click.Choice(["success", "failed"]))
@click.option("--downstream", "-d", is_flag=True, help="Also every task downstream of it.")
@click.option("--upstream", "-u", is_flag=True, help="Also every task upstream of it.")
@click.option("--map-index", type=int, help="Only this element of a mapped task.")
@click.option("--dry-run", is_flag=True, help="Print what would be marked; change nothing.")
@json_option
def mark_cmd(
    dag_id: str,
    run_id: str,
    task_id: str,
    state: str,
    downstream: bool,
    upstream: bool,
    map_index: int | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Mark task instances of one run success or failed, without running them.

    A queued or running try no longer counts: its process is killed and what its worker
    reports later is refused. A finished run runs again so the scheduler decides its state
    anew.
    """
    from drayman.states import TIState
    from drayman.store import actions

    def mark(conn: Connection, now: datetime, dry: bool) -> list[TIKey]:
        return actions.mark_task_instances(
            conn,
            dag_id,
            run_id,
            [task_id],
            state=TIState(state),
            downstream=downstream,
            upstream=upstream,
            map_index=map_index,
            dry_run=dry,
            now=now,
            by=who(),
        )

    from drayman.store.audit import AuditAction, Event, run_object

    event = Event(
        cli_actor(),
        AuditAction.TASK_MARK,
        *run_object(dag_id, run_id, task_id),
        {"state": state, "downstream": downstream, "upstream": upstream, "map_index": map_index},
    )
    run_action(
        mark,
        event=event,
        verb=f"mark {state}",
        past=f"marked {state}",
        dag_id=dag_id,
        run_id=run_id,
        dry_run=dry_run,
        confirm=False,
        as_json=as_json,
    )


@tasks.command("cancel")
@click.argument("dag_id")
@click.argument("run_id")
@click.argument("task_id")
@click.option("--map-index", type=int, default=-1, help="The element of a mapped task.")
@click.option("--dry-run", is_flag=True, help="Print what would be cancelled; change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
def cancel_cmd(
    dag_id: str,
    run_id: str,
    task_id: str,
    map_index: int,
    dry_run: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """Stop the queued or running try of one task: it fails, without further retries.

    Whoever runs the try kills its process group: the scheduler's local executor at once,
    a remote worker within a second. Clear the task to run it again.
    """
    from drayman.store import actions

    def cancel(conn: Connection, now: datetime, dry: bool) -> list[TIKey]:
        return actions.cancel_task_instance(
            conn, dag_id, run_id, task_id, map_index=map_index, dry_run=dry, now=now, by=who()
        )

    from drayman.store.audit import AuditAction, Event, run_object

    event = Event(
        cli_actor(),
        AuditAction.TASK_CANCEL,
        *run_object(dag_id, run_id, task_id),
        {"map_index": map_index},
    )
    run_action(
        cancel,
        event=event,
        verb="cancel",
        past="cancelled",
        dag_id=dag_id,
        run_id=run_id,
        dry_run=dry_run,
        confirm=not yes,
        as_json=as_json,
    )
