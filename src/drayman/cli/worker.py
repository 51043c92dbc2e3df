"""`drayman worker`: a Celery worker that runs tries sent by the schedulers.

It registers a worker component, heartbeats it from a thread on the database's clock, and runs
a prefork Celery worker on the given queues. SIGTERM (or Ctrl-C) is Celery's warm shutdown:
no new messages, running tries finish; then the component is marked stopped and the process
exits 0. A worker needs only the broker URL and the database URL: bundles come from the store.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import sys
import threading

import click

from drayman.cli import logs
from drayman.cli.common import export_home, load_settings, open_store
from drayman.config import Settings
from drayman.store.engine import Store

log = logging.getLogger("drayman.worker")

# Imported before Celery forks its pool, so every pool process starts warm and shares them.
PRELOAD = [
    "drayman.runner.remote",
    "drayman.authoring.dag",
    "drayman.authoring.tasks",
    "drayman.timetables",
    "jinja2.sandbox",
]


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
    help="Tries run at once (pool processes); default: parallelism.",
)
def worker(queues: list[str], concurrency: int | None) -> None:
    """Run a Celery worker: takes tries from the broker and records them in the database."""
    settings = load_settings()
    logs.setup(settings.log_format)
    concurrency = concurrency or settings.parallelism
    store = open_store(settings)
    export_home(settings)
    code = serve_worker(settings, store, queues=queues, concurrency=concurrency)
    sys.exit(code)


def serve_worker(settings: Settings, store: Store, *, queues: list[str], concurrency: int) -> int:
    from drayman.executors.celery import make_app, run_worker
    from drayman.store import components

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
    # The pool forks from this process: its children must not share our pooled connections.
    os.register_at_fork(after_in_child=lambda: store.engine.dispose(close=False))
    for module in PRELOAD:
        importlib.import_module(module)
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
    try:
        app = make_app(settings, worker_id=worker_id)
        code = run_worker(
            app, queues=queues, concurrency=concurrency, nodename=f"drayman-{pid}@{host}"
        )
    finally:
        stop.set()
        beat.join(timeout=10)
        with store.begin() as conn:
            components.mark_stopped(conn, worker_id, store.db_now(conn))
        store.dispose()
        log.info("worker.stopped id=%s exit=%s", worker_id, code)
    return code


def _heartbeat(settings: Settings, store: Store, worker_id: int, stop: threading.Event) -> None:
    from drayman.store import components

    while not stop.wait(settings.heartbeat_interval_s):
        try:
            with store.begin() as conn:
                components.heartbeat(conn, worker_id, store.db_now(conn))
        except Exception as exc:  # the database restarting: try again next time
            log.error("worker.heartbeat_failed id=%s: %s", worker_id, str(exc).splitlines()[0])
