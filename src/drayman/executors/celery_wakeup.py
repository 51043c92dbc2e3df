"""Cross-host wake-up for the Celery executor: a worker rings, every scheduler hears.

A Celery worker records a try's outcome in the store itself. Without a wake-up the scheduler
learns of it only by re-planning running runs on a poll, which costs each hop of a chain up to
that poll. The local doorbell (`drayman.wakeup`) is a Unix socket: one host only. This one
goes through the broker the tries already travel on, Redis or RabbitMQ (kombu, no Celery):

    worker: OutcomeBell.ring(*run_ids)      a set and an Event; its thread publishes the set
        │                                   as one message, e.g. {"runs": [12, 40]}
        ▼
    broker: fanout exchange "drayman.wakeup"      nothing stored: a ring nobody hears is gone
        │ (one exclusive, auto-deleted queue per scheduler: every scheduler hears every ring)
        ▼
    scheduler: OutcomeListener               its thread keeps the run ids and makes a pipe
                                             readable; CeleryExecutor.events() -> RunsChanged

A ring is a hint, never the truth: it says "these runs changed in the store, re-plan them".
Nothing depends on it being heard. A listener that (re)connects reports "every run" once,
because rings sent while it was away are lost; while it cannot reach the broker it reports
"every run" each `remote_poll_s`, which is then the scheduler's poll; and the scheduler's own
`scheduler_poll_s` still re-plans everything. A bell that cannot publish keeps what it has and
sends it when the broker is back; it never blocks or raises into the code that rings it.

Coalescing: `ring()` only adds a run id to a set. The bell's thread publishes the whole set as
one message as soon as it is woken, so a lone outcome goes out at once and a burst that arrives
while one message is on the wire leaves as the next one. On Redis a ring is a PUBLISH (kombu's
fanout); on RabbitMQ a transient message to a non-durable fanout exchange.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

from kombu.connection import Connection
from kombu.entity import Exchange, Queue
from kombu.messaging import Consumer, Producer

from drayman.config import Settings
from drayman.executors import kombu_redis
from drayman.workloads import RunsChanged

log = logging.getLogger("drayman.executors.wakeup")

EXCHANGE = "drayman.wakeup"
# a message names at most this many runs; a bigger burst says "every run" instead
MAX_RUN_IDS = 1000
CONNECT_TIMEOUT_S = 2.0
# how often the listener's thread looks up from the broker (stop, heartbeats): bounds close()
DRAIN_TIMEOUT_S = 0.25
AMQP_HEARTBEAT_S = 10  # a half-open RabbitMQ connection is noticed within about this long
RETRY_MIN_S = 0.2  # first wait before reconnecting; doubles up to RETRY_MAX_S
RETRY_MAX_S = 5.0


def _exchange(name: str) -> Exchange:
    # not durable, not auto-deleted: it lives while the broker does and either side redeclares
    # it on connecting; an auto-deleted one would vanish with the last scheduler and make the
    # bells' publishes fail on RabbitMQ
    return Exchange(name, type="fanout", durable=False, auto_delete=False, delivery_mode=1)


class OutcomeBell:
    """Worker side: tell every scheduler that runs changed. Cheap, never blocks, never raises.

    One per process (its thread and connection do not survive a fork: `ring()` in a forked
    child starts its own). `close()` sends what is pending, within `timeout_s`.
    """

    def __init__(self, settings: Settings, *, exchange: str = EXCHANGE) -> None:
        self._url = settings.broker_url
        self._exchange = _exchange(exchange)
        self._lock = threading.Lock()
        self._wanted = threading.Event()
        self._stop = threading.Event()
        self._runs: set[int] = set()
        self._all_runs = False
        self._thread: threading.Thread | None = None
        self._pid = 0
        self.published = 0  # messages sent, for tests and metrics

    def ring(self, *run_ids: int) -> None:
        """Say that these runs changed in the store; with none, that some run did (which one
        is unknown: the schedulers re-plan every running run)."""
        with self._lock:
            if not run_ids or len(self._runs) + len(run_ids) > MAX_RUN_IDS:
                self._all_runs = True
            else:
                self._runs.update(run_ids)
            if self._pid != os.getpid():  # first ring here, or we were forked: a fresh thread
                self._pid = os.getpid()
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._run, name="drayman-outcome-bell", daemon=True
                )
                self._thread.start()
        self._wanted.set()

    def close(self, timeout_s: float = 2.0) -> None:
        """Send what is pending (if the broker answers within `timeout_s`) and stop."""
        thread = self._thread
        if thread is None or self._pid != os.getpid():
            return
        self._stop.set()
        self._wanted.set()
        thread.join(timeout=timeout_s)
        self._thread = None
        self._pid = 0

    # -- the bell's thread: the only user of its connection ----------------------------------

    def _run(self) -> None:
        delay = RETRY_MIN_S
        failing = False
        while True:
            last_try = self._stop.is_set()  # closing: one attempt at what is left, no more
            try:
                with Connection(
                    self._url,
                    connect_timeout=CONNECT_TIMEOUT_S,
                    transport=kombu_redis.transport_for(self._url),
                ) as conn:
                    conn.ensure_connection(max_retries=0)  # our loop retries, not kombu
                    channel = conn.default_channel
                    self._exchange(channel).declare()
                    producer = Producer(channel, exchange=self._exchange, auto_declare=False)
                    delay, failing = RETRY_MIN_S, False
                    if self._publish_until_stopped(producer):
                        return
            except Exception as exc:  # kombu's connection and channel errors, OSError, ...
                if not failing:  # once per outage: the rings are kept and sent when it is over
                    log.warning("wakeup.publish_failed %s: %s", type(exc).__name__, exc)
                failing = True
            if last_try or (self._stop.is_set() and not self._pending()):
                return
            self._stop.wait(delay)  # close() cuts the wait short
            delay = min(delay * 2, RETRY_MAX_S)

    def _publish_until_stopped(self, producer: Producer) -> bool:
        """Publish whatever piled up each time we are woken; True once stopped and flushed."""
        while True:
            self._wanted.wait()
            body = self._take()
            if body is not None:
                try:
                    producer.publish(body, routing_key="", serializer="json", retry=False)
                except Exception:
                    self._put_back(body)
                    raise
                self.published += 1
            if self._stop.is_set() and not self._pending():
                return True

    def _take(self) -> dict[str, Any] | None:
        with self._lock:
            self._wanted.clear()
            if not self._runs and not self._all_runs:
                return None
            body: dict[str, Any] = {"runs": None if self._all_runs else sorted(self._runs)}
            self._runs, self._all_runs = set(), False
            return body

    def _put_back(self, body: dict[str, Any]) -> None:
        with self._lock:
            if body["runs"] is None or len(self._runs) + len(body["runs"]) > MAX_RUN_IDS:
                self._all_runs = True
            else:
                self._runs.update(body["runs"])
        self._wanted.set()

    def _pending(self) -> bool:
        with self._lock:
            return bool(self._runs or self._all_runs)


class OutcomeListener:
    """Scheduler side: hears every bell; `fileno()` is readable when something was heard.

    `take()` returns what was heard since the last call as one `RunsChanged`. The thread
    consumes a queue of this process's own (exclusive, auto-deleted: it goes with us) bound to
    the fanout exchange, so every scheduler hears every ring.
    """

    def __init__(
        self, settings: Settings, *, exchange: str = EXCHANGE, fallback_s: float | None = None
    ) -> None:
        self._url = settings.broker_url
        self._exchange = _exchange(exchange)
        self._queue_name = f"{exchange}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self._fallback_s = fallback_s if fallback_s is not None else settings.remote_poll_s
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._lock = threading.Lock()
        self._runs: set[int] = set()
        self._all_runs = False
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.messages = 0  # messages heard, for tests and metrics

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name="drayman-outcome-listener", daemon=True
        )
        self._thread.start()

    def fileno(self) -> int:
        return self._read

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        """Whether the listener is consuming (rings from now on are heard) within `timeout_s`."""
        return self._connected.wait(timeout_s)

    def take(self) -> RunsChanged | None:
        """What was heard since the last call, or None; empties the pipe."""
        if self._closed:
            return None
        with contextlib.suppress(BlockingIOError):
            while os.read(self._read, 4096):
                pass
        with self._lock:
            if not self._runs and not self._all_runs:
                return None
            heard = RunsChanged(frozenset(self._runs), all_runs=self._all_runs)
            self._runs, self._all_runs = set(), False
        return heard

    def close(self) -> None:
        if self._closed:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=CONNECT_TIMEOUT_S + 2 * DRAIN_TIMEOUT_S)
        self._closed = True
        if self._thread is None or not self._thread.is_alive():
            # a thread still stuck in the broker would write to whatever reuses these numbers
            os.close(self._read)
            os.close(self._write)

    # -- the listener's thread ----------------------------------------------------------------

    def _run(self) -> None:
        delay = RETRY_MIN_S
        while not self._stop.is_set():
            try:
                self._consume()
                delay = RETRY_MIN_S
            except Exception as exc:  # kombu's connection and channel errors, OSError, ...
                if self._connected.is_set():
                    log.warning(
                        "wakeup.listener_lost %s: %s; polling every %g s until it is back",
                        type(exc).__name__,
                        exc,
                        self._fallback_s,
                    )
            self._connected.clear()
            self._poll_for(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    def _consume(self) -> None:
        with Connection(
            self._url, connect_timeout=CONNECT_TIMEOUT_S, heartbeat=AMQP_HEARTBEAT_S
        ) as conn:
            conn.ensure_connection(max_retries=0)  # our loop retries, not kombu
            channel = conn.default_channel
            queue = Queue(
                self._queue_name,
                self._exchange,
                routing_key="",
                durable=False,
                exclusive=True,
                auto_delete=True,
            )
            with Consumer(
                channel,
                [queue],
                callbacks=[self._on_message],
                no_ack=True,
                accept=["json"],
                on_decode_error=self._on_bad_message,
            ):
                self._connected.set()
                log.info("wakeup.listening queue=%s", self._queue_name)
                self._heard(None)  # rings sent while we were away are lost: re-plan all
                while not self._stop.is_set():
                    try:
                        conn.drain_events(timeout=DRAIN_TIMEOUT_S)
                    except TimeoutError:  # socket.timeout: nothing came; keep RabbitMQ's beat
                        conn.heartbeat_check()

    def _poll_for(self, seconds: float) -> None:
        """Broker away: report "every run" each fallback_s while waiting to reconnect."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set():
            self._heard(None)
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._stop.wait(min(self._fallback_s, left))

    def _on_message(self, body: Any, _message: Any) -> None:
        self.messages += 1
        runs = body.get("runs") if isinstance(body, dict) else None
        if isinstance(runs, list) and all(type(r) is int for r in runs):
            self._heard(runs)
        else:  # a ring that names no runs, or that we cannot read: re-plan them all
            self._heard(None)

    def _on_bad_message(self, _message: Any, exc: Exception) -> None:
        """Not JSON (forged, or another program's): ignore it, but re-plan to be safe."""
        log.warning("wakeup.bad_message %s: %s", type(exc).__name__, exc)
        self._heard(None)

    def _heard(self, runs: list[int] | None) -> None:
        with self._lock:
            if runs is None:
                self._all_runs = True
            else:
                self._runs.update(runs)
        with contextlib.suppress(BlockingIOError):  # full: it is readable anyway
            os.write(self._write, b"!")
