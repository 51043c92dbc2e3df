"""`drayman worker`: a Celery worker that runs tries sent by the schedulers.

It registers a worker component, heartbeats it from a thread on the database's clock, and runs
a Celery worker on the given queues whose tries the worker's engine claims, runs and records
(`drayman.worker`). SIGTERM (or Ctrl-C) is Celery's warm shutdown: no new messages,
running tries get `worker_grace_s` to finish, then are handed back; the component is marked
stopped and the process exits 0. If the engine thread dies on an error, the worker stops the
same way and exits 1, so that systemd (Restart=always) or the operator starts a new one.
A worker needs only the broker URL and the database URL:
bundles come from the store.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from dataclasses import replace

import click

from drayman.cli import logs
from drayman.cli.common import load_settings, open_store, prepare_task_environment
from drayman.config import Settings
from drayman.store.engine import Store

log = logging.getLogger("drayman.worker")

ENGINE_DIED_EXIT = 1  # the worker's engine thread ended on an error: restart the worker


def _queue_list(_ctx: click.Context, _param: click.Parameter, value: str) -> list[str]:
    queues = [name.strip() for name in value.split(",") if name.strip()]
    if not queues:
        raise click.BadParameter("name at least one queue, e.g. default,heavy")
    return queues


@click.command("worker")
@click.option(
    "--queues",
    "-q",
    default="default",
    show_default=True,
    callback=_queue_list,
    help="Comma-separated queues to take tries from.",
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(1, None),
    default=None,
    help="Tries run at once; default: parallelism.",
)
@click.option(
    "--grace",
    type=click.FloatRange(0, None, min_open=True),
    default=None,
    help="On SIGTERM, seconds running tries get to finish before they are handed back; "
    "default: worker_grace_s (300).",
)
def worker(queues: list[str], concurrency: int | None, grace: float | None) -> None:
    """Run a Celery worker: takes tries from the broker and records them in the database."""
    settings = load_settings()
    if grace is not None:
        settings = replace(settings, worker_grace_s=grace)
    logs.setup(settings.log_format)
    concurrency = concurrency or settings.parallelism
    store = open_store(settings)
    prepare_task_environment(settings)
    code = serve_worker(settings, store, queues=queues, concurrency=concurrency)
    sys.exit(code)


def serve_worker(settings: Settings, store: Store, *, queues: list[str], concurrency: int) -> int:
    from drayman.executors.celery import make_app, run_worker
    from drayman.executors.celery_wakeup import OutcomeBell
    from drayman.store import components
    from drayman.worker.engine import RemoteRunner

    host, pid = socket.gethostname(), os.getpid()
    with store.begin() as conn:
        worker_id = components.register(
            conn,
            kind="worker",
            hostname=host,
            pid=pid,
            executor="celery",
            queues=queues,
            concurrency=concurrency,
            now=store.db_now(conn),
        )
    stop = threading.Event()
    beat = threading.Thread(
        target=_heartbeat,
        args=(settings, store, worker_id, stop),
        name="drayman-worker-heartbeat",
        daemon=True,
    )
    beat.start()
    log.info(
        "worker.started id=%s queues=%s concurrency=%s", worker_id, ",".join(queues), concurrency
    )
    code = 1
    bell = OutcomeBell(settings)  # wakes every scheduler as outcomes are recorded (ADR 9)
    runner = RemoteRunner(
        settings,
        store,
        worker_id=worker_id,
        concurrency=concurrency,
        bell=bell.ring,
        on_death=_stop_this_worker,
        queues=queues,
    )
    runner.start()
    try:
        app = make_app(settings, runner=runner)
        code = run_worker(
            app,
            runner,
            queues=queues,
            concurrency=concurrency,
            nodename=f"drayman-{pid}@{host}",
            grace_s=settings.worker_grace_s,
        )
        if runner.failure is not None:
            code = ENGINE_DIED_EXIT
    finally:
        runner.stop()
        bell.close()
        stop.set()
        beat.join(timeout=10)
        with store.begin() as conn:
            components.mark_stopped(conn, worker_id, store.db_now(conn))
        store.dispose()
        log.info("worker.stopped id=%s exit=%s", worker_id, code)
    return code


def _stop_this_worker(_: BaseException) -> None:
    """The engine died: the warm shutdown that SIGTERM starts (no new messages, the
    Celery threads return), then `serve_worker` exits with `ENGINE_DIED_EXIT`."""
    os.kill(os.getpid(), signal.SIGTERM)


def _heartbeat(settings: Settings, store: Store, worker_id: int, stop: threading.Event) -> None:
    from drayman.store import components

    while not stop.wait(settings.heartbeat_interval_s):
        try:
            with store.begin() as conn:
                components.heartbeat(conn, worker_id, store.db_now(conn))
        except Exception as exc:  # the database restarting: try again next time
            log.error("worker.heartbeat_failed id=%s: %s", worker_id, str(exc).splitlines()[0])
