"""`drayman scheduler` and `drayman standalone`: the long-running processes.

Only this module installs signal handlers: SIGTERM or Ctrl-C sets a stop event, the
scheduler finishes its tick, the executor lets running tries finish within a grace period,
and the process exits 0.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from drayman.cli import logs
from drayman.cli.common import load_settings, open_store, prepare_task_environment
from drayman.config import Settings
from drayman.exceptions import ConfigError
from drayman.redact import mask_url
from drayman.store.engine import Store

log = logging.getLogger("drayman.serve")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "dags"


@click.command("scheduler")
@click.option(
    "--grace",
    default=30.0,
    show_default=True,
    help="Seconds running tries may take to finish after SIGTERM.",
)
def scheduler(grace: float) -> None:
    """Run the scheduler, the DAG processor and (with the local executor) the workers.

    Watches DRAYMAN_DAGS_FOLDER and publishes a new bundle version when a file changes: no
    restart. Needs a migrated database (`drayman db migrate`).
    """
    settings = load_settings()
    logs.setup(settings.log_format)
    store = open_store(settings)
    serve(settings, store, grace_s=grace)


@click.command("standalone")
@click.option(
    "--examples/--no-examples",
    default=None,
    help="Run the bundled example DAGs (default: when the DAG folder does not exist).",
)
@click.option(
    "--grace",
    default=30.0,
    show_default=True,
    help="Seconds running tries may take to finish after Ctrl-C.",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Port of the web UI on 127.0.0.1 (default: DRAYMAN_WEB_PORT, 8080).",
)
def standalone(examples: bool | None, grace: float, port: int | None) -> None:
    """Everything on one machine: SQLite under DRAYMAN_HOME, scheduler, local executor.

    Migrates the database, loads your DAG folder (or the example DAGs), and runs until
    Ctrl-C. Logs of every try are under DRAYMAN_HOME/logs. Exits 2 at once if the web
    port is taken.
    """
    from drayman.cli.web import WebThread, listen

    settings = load_settings(web_port=port)
    sock = listen("127.0.0.1", settings.web_port)  # before anything starts: a taken port stops us
    use_examples = examples if examples is not None else not settings.dags_folder.is_dir()
    if use_examples:
        settings = settings.with_overrides(dags_folder=EXAMPLES)
    logs.setup(settings.log_format)
    store = open_store(settings, check_schema=False)
    store.migrate()
    _banner(settings, store, use_examples)
    web = WebThread(settings, store, sock)
    web.start()
    try:
        serve(settings, store, grace_s=grace, announce_runs=True)
    finally:
        web.stop()


def _banner(settings: Settings, store: Store, examples: bool) -> None:
    lines = [
        "drayman standalone",
        f"  database:  {mask_url(store.url)}",
        f"  DAGs:      {settings.dags_folder}" + ("  (the bundled examples)" if examples else ""),
        f"  logs:      {settings.logs_folder.resolve()}",
        f"  executor:  local, {settings.parallelism} tries at once",
        f"  web:       http://127.0.0.1:{settings.web_port}/  (log in as a user made with "
        "`drayman users create NAME --role admin`)",
        "  try:       drayman dags list   |   drayman runs list   |   Ctrl-C to stop",
    ]
    click.echo("\n".join(lines))


def serve(settings: Settings, store: Store, *, grace_s: float, announce_runs: bool = False) -> None:
    """Run processor, scheduler and executor until SIGTERM or SIGINT."""
    from drayman.dag_processor.processor import DagProcessor
    from drayman.scheduler.loop import Scheduler
    from drayman.wakeup import Doorbell

    stop = threading.Event()
    prepare_task_environment(settings)
    wake_on_stop: list[Callable[[], None]] = []
    with _single_scheduler_on_sqlite(store), _stop_on_signals(stop, wake_on_stop):
        processor = DagProcessor(settings, store)
        _publish_once(processor)
        executor = _executor(settings)
        sched = Scheduler(settings, store, executor, executor_name=settings.executor)
        if announce_runs:
            sched.run_listeners.append(lambda run: _announce(settings, run))
        wake_on_stop.append(sched.wake)
        doorbell = Doorbell(settings.home)
        watcher = threading.Thread(
            target=_watch, args=(processor, settings, stop), name="dag-processor", daemon=True
        )
        sched.start()
        watcher.start()
        try:
            sched.run(stop, doorbell=doorbell)
        finally:
            stop.set()
            sched.stop(grace_s)
            watcher.join(timeout=10)
            doorbell.close()
            store.dispose()


def _executor(settings: Settings) -> Any:
    if settings.executor == "local":
        from drayman.executors.local import LocalExecutor

        return LocalExecutor(settings)
    if settings.executor == "celery":
        from drayman.executors.celery import CeleryExecutor

        return CeleryExecutor(settings)
    raise ConfigError(f"executor {settings.executor!r} is unknown; use 'local' or 'celery'")


def _publish_once(processor: Any) -> None:
    try:
        processor.tick()
    except Exception:  # the folder may be broken now and fixed later: keep serving
        log.exception("dags.publish_failed")


def _watch(processor: Any, settings: Settings, stop: threading.Event) -> None:
    """Check the DAG folder every dags_poll_s; a new version wakes the scheduler."""
    from drayman.wakeup import ring

    while not stop.wait(settings.dags_poll_s):
        try:
            if processor.tick():
                ring(settings.home)
        except Exception:
            log.exception("dags.publish_failed")


def _announce(settings: Settings, run: Any) -> None:
    took = ""
    if run.start_date and run.end_date:
        took = f" in {(run.end_date - run.start_date).total_seconds():.1f}s"
    where = settings.logs_folder.resolve() / run.dag_id
    click.echo(f"run {run.dag_id} {run.run_id}: {run.state}{took}  logs: {where}/")


@contextmanager
def _stop_on_signals(stop: threading.Event, wake: list[Callable[[], None]]) -> Iterator[None]:
    def handler(signum: int, _frame: Any) -> None:
        log.info("scheduler.stopping signal=%s", signal.Signals(signum).name)
        stop.set()
        for callback in wake:
            callback()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def _single_scheduler_on_sqlite(store: Store) -> Iterator[None]:
    """SQLite has no row locks to share work: a second scheduler must refuse to start."""
    if store.dialect != "sqlite":
        yield
        return
    db_path = store.url.split("///", 1)[-1]
    lock_path = Path(db_path + ".scheduler.lock")
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise ConfigError(
                f"a scheduler ({holder}) already runs on the SQLite database {db_path}; SQLite "
                "allows one scheduler: stop it, or use PostgreSQL or MySQL to run several"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
