"""The Celery executor: tries travel as bare ids over Redis or RabbitMQ. The only Celery import.

Scheduler side, `CeleryExecutor` sends `drayman.run_tries` with the ids of up to
`TRIES_PER_MESSAGE` tries of one queue, to that queue, or `drayman.run_callback` with a
finished run's dag id, run id and callback name. Nothing else travels: a worker rebuilds the
workload from the store (`drayman.worker`), so a forged or replayed message can only
name tries, and the try-id fence (ADR 4) refuses one that is not queued and current. A message
of the wrong shape (ids past the database's INTEGER, bools, floats, lists over the cap, extra
arguments) is refused in a log line of bounded size and acknowledged, never retried (ADR 13).
`drayman.run_try` (one id) is still understood, from schedulers that sent one try per message.

Worker side, `make_app(settings, runner=...)` registers the task bodies, which hand each id
to the worker's engine (`drayman.worker.engine.RemoteRunner`: batched claims and outcomes,
warm processes that fork one child per try); `run_worker` runs a Celery worker whose pool is
a thread per try slot, each waiting for its try to be recorded.

Workers record starts and outcomes in the store themselves and ring an `OutcomeBell` (ADR 9,
`drayman.executors.celery_wakeup`): a tiny message on a fanout exchange that every scheduler
hears. `fileno()` is the listener's pipe and `events()` reports only `RunsChanged`, the runs
to re-plan; a broker that is away makes the listener report "every run" each
`Settings.remote_poll_s` until it is back.

Delivery: late acknowledgement (after the outcome is recorded), `worker_prefetch_multiplier`
messages per slot (1 by default). A message whose worker died is delivered again (RabbitMQ: at
once; Redis: after the visibility timeout); a redelivery finds its try RUNNING and runs
nothing, and the scheduler declares the try lost once the worker's heartbeat lapses.
"""

from __future__ import annotations

import logging
import reprlib
import threading
from collections.abc import Sequence
from typing import Any

from celery import Celery, Task

from drayman.config import Settings
from drayman.exceptions import ConfigError, ExecutorError
from drayman.executors import kombu_redis
from drayman.executors.base import WorkerEngine
from drayman.executors.celery_wakeup import OutcomeListener
from drayman.fleet import IN_FLIGHT_PER_SLOT
from drayman.redact import MaskingFilter, mask_text, mask_url
from drayman.workloads import CallbackWorkload, ExecutorEvent, TryWorkload, Workload

log = logging.getLogger("drayman.executors.celery")

# Celery's INFO line per message received and per task succeeded: drayman logs task.started
# and task.finished with the try id already, and building each record costs CPU per try.
PER_MESSAGE_LOGGERS = ("celery.worker.strategy", "celery.app.trace")

RUN_TRIES = "drayman.run_tries"
RUN_TRY = "drayman.run_try"  # one id per message: what earlier schedulers sent
RUN_CALLBACK = "drayman.run_callback"
CALLBACK_QUEUE = "default"
CONNECT_TIMEOUT_S = 5.0
# Tries per message: a slot's share of its queue's in-flight cap. The worker claims the
# first when a slot is free and the second in the round that records an outcome, and Celery,
# the broker and the scheduler handle one message for both (ADR 11).
TRIES_PER_MESSAGE = IN_FLIGHT_PER_SLOT
MAX_TRIES_ACCEPTED = 64  # a message naming more is refused: no scheduler sends one


def make_app(settings: Settings, *, runner: WorkerEngine | None = None) -> Celery:
    """The Celery app for `settings.broker_url`; a worker's passes the `runner` of its tries."""
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
        worker_prefetch_multiplier=settings.worker_prefetch_multiplier,
        broker_connection_retry_on_startup=True,
        task_default_queue=CALLBACK_QUEUE,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        enable_utc=True,
    )
    # kombu's Redis transport, minus a new client per message (see the module)
    app.conf.broker_transport = kombu_redis.transport_for(settings.broker_url)
    if settings.broker_url.startswith(("redis://", "rediss://")):
        # A message unacknowledged this long is delivered again; the fence makes that a no-op
        # for a try that started, so this only decides how soon a lost message is retried.
        app.conf.broker_transport_options = {
            "visibility_timeout": settings.broker_visibility_timeout_s
        }

    # shared=False: each app (one per test, one per worker) keeps its own task registry.
    # The bodies take any arguments: a malformed message is refused here, in a log line of
    # bounded size, and acknowledged (never retried nor sent again), instead of a TypeError.
    def run_tries_task(task: Task, *args: Any, **kwargs: Any) -> None:
        try_ids = _only_argument(args, kwargs, "try_ids")
        if not _is_id_list(try_ids):
            _refuse(
                "try", args, kwargs, f"try ids must be a list of 1 to {MAX_TRIES_ACCEPTED} {_IDS}"
            )
            return
        _run_and_send_back(task, _runner_of(runner), try_ids)

    def run_try_task(task: Task, *args: Any, **kwargs: Any) -> None:
        try_id = _only_argument(args, kwargs, "try_id")
        if not _is_id(try_id):
            _refuse("try", args, kwargs, f"a try id must be one of the {_IDS}")
            return
        _run_and_send_back(task, _runner_of(runner), [try_id])

    def run_callback_task(*args: Any, **kwargs: Any) -> None:
        if kwargs or len(args) != 3 or not all(_is_name(value) for value in args):
            _refuse("callback", args, kwargs, f"expected dag id, run id, callback: {_NAMES}")
            return
        _runner_of(runner).run_callback(*args)

    # Registered by a call, not with decorator syntax: Celery is untyped, and a decorator
    # would leave mypy a function of unknown type.
    app.task(name=RUN_TRIES, bind=True, ignore_result=True, shared=False)(run_tries_task)
    app.task(name=RUN_TRY, bind=True, ignore_result=True, shared=False)(run_try_task)
    app.task(name=RUN_CALLBACK, ignore_result=True, shared=False)(run_callback_task)
    return app


MAX_TRY_ID = 2**31 - 1  # task_try.id is a 32-bit INTEGER on PostgreSQL and MariaDB
MAX_NAME = 250  # dag ids and run ids (store.schema.ID)
REFUSED_REPR_CHARS = 200  # a refused message is logged this long at most
_IDS = f"integers from 1 to {MAX_TRY_ID}"
_NAMES = f"three strings of 1 to {MAX_NAME} characters"
_MISSING = object()


def _only_argument(args: tuple[Any, ...], kwargs: dict[str, Any], name: str) -> Any:
    """The message's one argument, positional or named `name`; `_MISSING` otherwise."""
    if len(args) == 1 and not kwargs:
        return args[0]
    if not args and list(kwargs) == [name]:
        return kwargs[name]
    return _MISSING


def _is_id(value: Any) -> bool:
    return type(value) is int and 1 <= value <= MAX_TRY_ID


def _is_id_list(value: Any) -> bool:
    return (
        type(value) is list
        and 0 < len(value) <= MAX_TRIES_ACCEPTED
        and all(_is_id(item) for item in value)
    )


def _is_name(value: Any) -> bool:
    return type(value) is str and 0 < len(value) <= MAX_NAME


def _refuse(what: str, args: tuple[Any, ...], kwargs: dict[str, Any], why: str) -> None:
    """Log a refused message in bounded size: its first `REFUSED_REPR_CHARS` characters."""
    shown = args[0] if len(args) == 1 and not kwargs else {"args": args, "kwargs": kwargs}
    log.warning("%s.refused %s: %s; the message is dropped", what, _bounded_repr(shown), why)


def _bounded_repr(value: Any, limit: int = REFUSED_REPR_CHARS) -> str:
    """`repr(value)` cut to `limit` characters, without building the whole of a huge one."""
    text = _SHORT_REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = _SHORT_REPR.maxlong = REFUSED_REPR_CHARS
_SHORT_REPR.maxlist = _SHORT_REPR.maxtuple = _SHORT_REPR.maxdict = 16


def _run_and_send_back(task: Task, runner: WorkerEngine, try_ids: list[int]) -> None:
    """Run the tries; one released unclaimed (no free slot here for a while, or the worker is
    stopping) goes back to the queue at once, for another worker, instead of waiting for the
    scheduler's `queued_timeout_s`."""
    queue = (task.request.delivery_info or {}).get("routing_key") or CALLBACK_QUEUE

    def send_again(released: list[int]) -> None:
        try:
            task.app.send_task(
                RUN_TRIES, args=[released], queue=queue, task_id=task_id_of(released)
            )
        except Exception as exc:  # the broker is away: they are still QUEUED in the store
            log.warning(
                "tries.send_again_failed try_ids=%s: %s; the scheduler sends them again "
                "after queued_timeout_s",
                released,
                exc,
            )
        else:
            log.info("tries.sent_again try_ids=%s queue=%s", released, queue)

    runner.run_tries(try_ids, send_again)


def _runner_of(runner: WorkerEngine | None) -> WorkerEngine:
    if runner is None:
        raise ExecutorError("only `drayman worker` runs tries: this app was made to send them")
    return runner


def run_worker(
    app: Celery,
    runner: WorkerEngine,
    *,
    queues: Sequence[str],
    concurrency: int,
    nodename: str,
    grace_s: float,
    loglevel: str = "INFO",
) -> int:
    """Run a Celery worker until it is told to stop; its exit code.

    Its pool is `concurrency` threads, each waiting on one try that `runner` runs in a warm
    process of its own. Celery installs its own signal handlers: SIGTERM (or one Ctrl-C) is a
    warm shutdown, which stops taking messages and waits for the running tries; after
    `grace_s` the runner hands those back (killed, and retried without using up a retry).
    """
    from celery.signals import after_setup_logger, after_setup_task_logger, worker_shutting_down

    def start_grace(**_: Any) -> None:
        log.info("worker.stopping grace_s=%g: running tries may finish", grace_s)
        runner.release()
        timer = threading.Timer(grace_s, runner.hand_back)
        timer.daemon = True
        timer.start()

    worker_shutting_down.connect(start_grace, weak=False)
    after_setup_logger.connect(_mask_celery_log, weak=False)
    after_setup_task_logger.connect(_mask_celery_log, weak=False)
    for name in PER_MESSAGE_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    worker = app.Worker(
        hostname=nodename,
        queues=list(queues),
        concurrency=concurrency,
        pool="threads",
        loglevel=loglevel,
        redirect_stdouts=False,
        # heartbeats give the worker an event dispatcher: Flower's enable_events (remote
        # control) then turns task events on; without one, Flower sees no task (ADR 9)
        without_heartbeat=False,
        without_mingle=True,
        without_gossip=True,
        quiet=True,
    )
    try:
        worker.start()
    finally:
        worker_shutting_down.disconnect(start_grace)
        after_setup_logger.disconnect(_mask_celery_log)
        after_setup_task_logger.disconnect(_mask_celery_log)
    return int(worker.exitcode or 0)


def _mask_celery_log(logger: logging.Logger, **_: Any) -> None:
    """Celery's own handlers mask URL passwords too (kombu hides its broker URL's already;
    an exception's text may carry another URL)."""
    for handler in logger.handlers:
        handler.addFilter(MaskingFilter())


class CeleryExecutor:
    """Sends workloads as ids to Celery workers; see the module docstring.

    It cannot see what runs on the workers: `open_slots()` is `celery_min_in_flight`, only
    the floor of each queue's cap on tries queued or running across the deployment. The
    scheduler raises a served queue's cap to twice its live workers' total concurrency
    (`fleet.queue_cap`) and subtracts what the store counts per queue (its
    `FleetCapacity`). Twice the concurrency keeps every slot fed (a message waits for each
    running try) without a long queue in the broker: a try is queued shortly before a worker
    can start it, not minutes before.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._app: Celery | None = None
        self._listener: OutcomeListener | None = None
        self._stopping = False

    # ------------------------------------------------------------------ the Executor protocol

    def start(self) -> None:
        if self._app is not None:
            raise ExecutorError("the celery executor is already started")
        for note in self.settings.deprecations:
            log.warning("config.deprecated %s", note)
        app = make_app(self.settings)
        try:
            with app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=CONNECT_TIMEOUT_S)
        except Exception as exc:
            raise ExecutorError(
                f"cannot reach the broker {mask_url(self.settings.broker_url)}: "
                f"{type(exc).__name__}: {mask_text(str(exc))}"
            ) from exc
        self._app = app
        self._listener = OutcomeListener(self.settings)
        self._listener.start()

    def open_slots(self) -> int:
        if self._app is None or self._stopping:
            return 0
        return self.settings.celery_min_in_flight

    def submit(self, workloads: Sequence[Workload]) -> None:
        if self._app is None or self._stopping:
            raise ExecutorError(
                "the celery executor is not running: start() it, and never submit after stop()"
            )
        try:
            with self._app.producer_or_acquire() as producer:
                for queue, try_ids in messages_of(workloads):
                    self._app.send_task(
                        RUN_TRIES,
                        args=[try_ids],
                        queue=queue,
                        task_id=task_id_of(try_ids),
                        producer=producer,
                    )
                for workload in workloads:
                    if isinstance(workload, CallbackWorkload):
                        self._send_callback(producer, workload)
        except ExecutorError:
            raise
        except Exception as exc:  # kombu's errors: the broker is away
            raise ExecutorError(
                f"cannot send to the broker {mask_url(self.settings.broker_url)}: "
                f"{type(exc).__name__}: {mask_text(str(exc))}"
            ) from exc

    def events(self) -> list[ExecutorEvent]:
        """Only which runs changed: workers record their own tries' state in the store."""
        heard = self._listener.take() if self._listener is not None else None
        return [heard] if heard is not None else []

    def fileno(self) -> int | None:
        return self._listener.fileno() if self._listener is not None else None

    def running_try_ids(self) -> list[int]:
        """None here: each worker stops its own tries that the store ended (ADR 12)."""
        return []

    def cancel(self, try_id: int) -> None:
        """Revoke the try's message if it went alone; a try sent with another is refused by
        the fence when its message arrives (it is no longer queued). A running try runs on."""
        if self._app is not None:
            self._app.control.revoke(task_id_of([try_id]))

    def heartbeat(self) -> None:
        """Nothing to do here: workers heartbeat their own components in the store."""

    def stop(self, grace_s: float) -> None:
        """Stop sending; tries already sent run on their workers, whatever `grace_s`."""
        if self._app is None or self._stopping:
            return
        self._stopping = True
        self._app.close()
        if self._listener is not None:
            self._listener.close()

    def _send_callback(self, producer: Any, workload: CallbackWorkload) -> None:
        assert self._app is not None
        self._app.send_task(
            RUN_CALLBACK,
            args=[workload.run.dag_id, workload.run.run_id, workload.callback],
            queue=CALLBACK_QUEUE,
            producer=producer,
        )


def messages_of(workloads: Sequence[Workload]) -> list[tuple[str, list[int]]]:
    """(queue, try ids) of each message for `workloads`' tries: up to `TRIES_PER_MESSAGE`
    tries of one queue each, in the order the scheduler chose (priority first)."""
    by_queue: dict[str, list[int]] = {}
    for workload in workloads:
        if isinstance(workload, TryWorkload):
            by_queue.setdefault(workload.queue, []).append(workload.try_id)
    return [
        (queue, ids[start : start + TRIES_PER_MESSAGE])
        for queue, ids in by_queue.items()
        for start in range(0, len(ids), TRIES_PER_MESSAGE)
    ]


def task_id_of(try_ids: Sequence[int]) -> str:
    """The Celery task id of a message: known without a result backend, for revoking."""
    return "drayman-tries-" + "-".join(map(str, try_ids))
