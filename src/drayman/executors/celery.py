"""The Celery executor: tries travel as bare ids over Redis or RabbitMQ. The only Celery import.

Scheduler side, `CeleryExecutor` sends one message per workload: `drayman.run_try` with the
try id, to the task's queue, or `drayman.run_callback` with a finished run's dag id, run id
and callback name. Nothing else travels: a worker rebuilds the workload from the store
(`drayman.runner.remote`), so a forged or replayed message can only name a try, and the try-id
fence (ADR 4) refuses one that is not queued and current.

Worker side, `make_app(settings, worker_id=...)` registers the task bodies; `run_worker`
runs a prefork Celery worker whose pool children are the warm processes (forked from a parent
that imported drayman and the authoring API) and fork one child per try.

Workers record starts and outcomes in the store themselves, so `events()` is always empty and
`fileno()` None: the scheduler learns from the store (see `Settings.remote_poll_s`).

Delivery: late acknowledgement, one message prefetched per pool process, and a message whose
worker process died is rejected back to the queue; a redelivery then finds its try RUNNING and
runs nothing, and the scheduler declares the try lost once the worker's heartbeat lapses.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from celery import Celery

from drayman.config import Settings
from drayman.exceptions import ConfigError, ExecutorError
from drayman.workloads import CallbackWorkload, ExecutorEvent, TryWorkload, Workload

log = logging.getLogger("drayman.executors.celery")

RUN_TRY = "drayman.run_try"
RUN_CALLBACK = "drayman.run_callback"
CALLBACK_QUEUE = "default"
# One tick hands at most parallelism * BATCH_FACTOR workloads to the broker. The executor
# cannot see how many tries run on the workers: what runs at once is bounded by the workers'
# concurrency, pools and max_active_tasks; this only bounds one tick's transaction and burst.
BATCH_FACTOR = 8
CONNECT_TIMEOUT_S = 5.0


def make_app(settings: Settings, *, worker_id: int | None = None) -> Celery:
    """The Celery app for `settings.broker_url`; `worker_id`: the worker component's id."""
    if not settings.broker_url:
        raise ConfigError(
            "executor 'celery' needs broker_url: set DRAYMAN_BROKER_URL to "
            "redis://HOST:6379/0 or amqp://USER:PASSWORD@HOST:5672//"
        )
    app = Celery("drayman", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        task_default_queue=CALLBACK_QUEUE,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        enable_utc=True,
    )
    if settings.broker_url.startswith(("redis://", "rediss://")):
        # A message unacknowledged this long is delivered again; the fence makes that a no-op
        # for a try that started, so this only decides how soon a lost message is retried.
        app.conf.broker_transport_options = {
            "visibility_timeout": settings.broker_visibility_timeout_s
        }
    runtime = _Runtime(settings, worker_id)

    # shared=False: each app (one per test, one per worker) keeps its own task registry
    @app.task(name=RUN_TRY, ignore_result=True, shared=False)
    def run_try_task(try_id: Any) -> None:
        if type(try_id) is not int:
            log.warning("try.refused %r: a try id must be an integer", try_id)
            return
        from drayman.runner.remote import run_remote_try

        local = runtime.local()
        run_remote_try(
            settings,
            local.store,
            try_id,
            worker_id=runtime.worker_id,
            cache=local.cache,
            specs=local.specs,
        )

    @app.task(name=RUN_CALLBACK, ignore_result=True, shared=False)
    def run_callback_task(dag_id: Any, run_id: Any, callback: Any) -> None:
        if not all(isinstance(value, str) for value in (dag_id, run_id, callback)):
            log.warning("callback.refused %r: ids must be strings", (dag_id, run_id, callback))
            return
        from drayman.runner.remote import run_remote_callback

        local = runtime.local()
        run_remote_callback(
            settings, local.store, dag_id, run_id, callback, cache=local.cache, specs=local.specs
        )

    return app


@dataclass
class _Local:
    """What one worker (pool) process keeps between tasks: its own database connections."""

    store: Any
    cache: Any
    specs: Any


@dataclass
class _Runtime:
    """Per-process state of the task bodies, built on first use in each pool process: a
    store made before the pool forked would share its connections with every child."""

    settings: Settings
    worker_id: int | None
    _pid: int = 0
    _local: _Local | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def local(self) -> _Local:
        with self._lock:
            if self._local is None or self._pid != os.getpid():
                from drayman.bundles.cache import BundleCache
                from drayman.runner.remote import SpecCache
                from drayman.store.engine import Store

                store = Store(self.settings.effective_database_url, pool_size=1)
                # A try forks from this process: its child must never use (or close) our
                # pooled connections.
                os.register_at_fork(after_in_child=lambda: store.engine.dispose(close=False))
                self._local = _Local(
                    store, BundleCache(self.settings.bundle_cache), SpecCache(store)
                )
                self._pid = os.getpid()
            return self._local


def run_worker(
    app: Celery, *, queues: Sequence[str], concurrency: int, nodename: str, loglevel: str = "INFO"
) -> int:
    """Run a prefork Celery worker until it is told to stop; its exit code.

    Celery installs its own signal handlers: SIGTERM (or one Ctrl-C) is a warm shutdown,
    which stops taking messages and lets running tries finish.
    """
    from celery.signals import worker_process_init

    from drayman.runner.process import die_with_parent

    # a pool process dies with the worker's main process: after a kill -9 of the worker no
    # try may keep running (and its tries die with it in turn), or a retry would overlap it
    worker_process_init.connect(lambda **_: die_with_parent(os.getppid()), weak=False)
    worker = app.Worker(
        hostname=nodename,
        queues=list(queues),
        concurrency=concurrency,
        pool="prefork",
        loglevel=loglevel,
        redirect_stdouts=False,
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        quiet=True,
    )
    worker.start()
    return int(worker.exitcode or 0)


class CeleryExecutor:
    """Sends workloads as ids to Celery workers; see the module docstring."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._app: Celery | None = None
        self._stopping = False

    # ------------------------------------------------------------------ the Executor protocol

    def start(self) -> None:
        if self._app is not None:
            raise ExecutorError("the celery executor is already started")
        app = make_app(self.settings)
        try:
            with app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=CONNECT_TIMEOUT_S)
        except Exception as exc:
            raise ExecutorError(
                f"cannot reach the broker {_safe_url(self.settings.broker_url)}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        self._app = app

    def open_slots(self) -> int:
        if self._app is None or self._stopping:
            return 0
        return self.settings.parallelism * BATCH_FACTOR

    def submit(self, workloads: Sequence[Workload]) -> None:
        if self._app is None or self._stopping:
            raise ExecutorError(
                "the celery executor is not running: start() it, and never submit after stop()"
            )
        try:
            with self._app.producer_or_acquire() as producer:
                for workload in workloads:
                    self._send(producer, workload)
        except ExecutorError:
            raise
        except Exception as exc:  # kombu's errors: the broker is away
            raise ExecutorError(
                f"cannot send to the broker {_safe_url(self.settings.broker_url)}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def events(self) -> list[ExecutorEvent]:
        return []  # workers record their own state in the store

    def fileno(self) -> int | None:
        return None

    def cancel(self, try_id: int) -> None:
        """Revoke the try's message so that no worker starts it; a running try runs on."""
        if self._app is not None:
            self._app.control.revoke(task_id_of(try_id))

    def heartbeat(self) -> None:
        """Nothing to do here: workers heartbeat their own components in the store."""

    def stop(self, grace_s: float) -> None:
        """Stop sending; tries already sent run on their workers, whatever `grace_s`."""
        if self._app is None or self._stopping:
            return
        self._stopping = True
        self._app.close()

    def _send(self, producer: Any, workload: Workload) -> None:
        assert self._app is not None
        if isinstance(workload, TryWorkload):
            self._app.send_task(
                RUN_TRY,
                args=[workload.try_id],
                queue=workload.queue,
                task_id=task_id_of(workload.try_id),
                producer=producer,
            )
        elif isinstance(workload, CallbackWorkload):
            self._app.send_task(
                RUN_CALLBACK,
                args=[workload.run.dag_id, workload.run.run_id, workload.callback],
                queue=CALLBACK_QUEUE,
                producer=producer,
            )


def task_id_of(try_id: int) -> str:
    """The Celery task id of a try's message: known without a result backend, for revoking."""
    return f"drayman-try-{try_id}"


def _safe_url(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else f"{scheme}://{user}@{host}"
