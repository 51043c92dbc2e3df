"""The engine of a remote worker (`drayman worker`): claim, run and record tries in batches.

A broker message names one or two try ids (or a finished run and a callback name) and nothing
else. The Celery thread that received it hands the ids to `RemoteRunner.run_tries` and waits;
one pump thread does the rest, a round at a time:

1. claim: the try ids that arrived since the last round, as many as there are free slots
   (the rest wait, and are released to be sent again after `worker_hold_s`), in one
   transaction (`drayman.store.remote_claims`): only a try that is QUEUED and current is claimed
   (ADR 4). A redelivered, stale or forged message claims nothing and runs nothing.
2. run: the claimed tries go to warm processes on this host (the warm-process pool,
   `drayman.runner.pool`, ADR 3: one fork per try), which send back outcomes and log chunks.
3. record: the outcomes and the log chunks of the round, in one transaction (`recorder`); the
   waiting Celery threads return (their messages are acknowledged only now) and the
   schedulers are woken (`bell`).

Under load a round carries many tries, so the database sees a few transactions per round
instead of three per try; when idle, a round carries one and costs no latency. A database
that is away is retried every `RETRY_S` (`outage`) without losing a claim, an outcome or a
chunk; after a commit that may or may not have happened, the retry first asks what was stored.

Every second the engine asks which of its running tries the store has ended (cancelled,
cleared or marked by a person, or declared lost) and kills their process groups (ADR 12).

On shutdown (`hand_back`, when the worker's grace period is over) the tries still running
are killed and recorded as handed back: they are retried without using up a retry.

A try of a queue the worker does not serve is left QUEUED; one whose workload cannot be rebuilt
fails alone in the claim. If the pump thread itself dies, it answers every waiting Celery
thread and calls `on_death`, which stops the worker with a non-zero exit (ADR 13).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import replace

from drayman.config import Settings
from drayman.store import dispatch
from drayman.store.caches import SpecCache
from drayman.store.engine import Store
from drayman.worker.requests import CallbackRequest, EngineDied, Released, Signals, TryRequest
from drayman.worker.rounds import Rounds
from drayman.workloads import TryOutcome

log = logging.getLogger("drayman.worker")


class RemoteRunner:
    """Runs the tries a worker is sent; see the module docstring.

    `run_tries` and `run_callback` may be called from any thread; everything else happens on
    the pump thread (`drayman.worker.rounds`), which alone touches the warm-process pool.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        worker_id: int | None,
        concurrency: int,
        bell: Callable[..., None] | None = None,  # bell(*run_ids): ADR 9's OutcomeBell.ring
        on_death: Callable[[BaseException], None] | None = None,
        queues: Collection[str] | None = None,  # the queues it serves; None: any
    ) -> None:
        self.settings = replace(settings, parallelism=concurrency)
        self.store = store
        self.specs = SpecCache(store)
        self._inbox: queue.SimpleQueue[TryRequest | CallbackRequest] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        self._release, self._hand_back, self._stop = (threading.Event() for _ in range(3))
        signals = Signals(self._inbox, self._wake_r, self._release, self._hand_back, self._stop)
        self._rounds = Rounds(
            self.settings,
            store,
            self.specs,
            signals,
            worker_id=worker_id,
            concurrency=concurrency,
            bell=bell,
            queues=None if queues is None else frozenset(queues),
        )
        # what ended the engine thread, if an error did; set under _post_lock, so that every
        # request posted before it is answered by the dying engine and none is posted after
        self.failure: BaseException | None = None
        self._post_lock = threading.Lock()
        self._on_death = on_death
        self._thread = threading.Thread(target=self._pump, name="drayman-engine", daemon=True)

    # --------------------------------------------------------------------- any thread

    def start(self) -> None:
        self._rounds.pool.start()
        self._thread.start()

    def run_tries(self, try_ids: Sequence[int], send_again: Callable[[list[int]], None]) -> None:
        """Claim, run and record the tries of one message; return when all are over.

        Each is claimed once a slot is free for it: the second of a message waits here,
        still QUEUED in the store, and is claimed in the round that records an outcome. One
        released unclaimed (after `worker_hold_s`, or as the worker stops) goes to `send_again` at
        once, for another worker.
        """
        requests: dict[Future[TryOutcome | None], int] = {Future(): try_id for try_id in try_ids}
        for done, try_id in requests.items():
            try:
                self._post(TryRequest(try_id, done))
            except EngineDied:  # still QUEUED in the store: for another worker
                done.set_exception(Released(try_id))
        pending: set[Future[TryOutcome | None]] = set(requests)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            released = [requests[f] for f in finished if isinstance(f.exception(), Released)]
            if released:
                send_again(sorted(released))

    def run_callback(self, dag_id: str, run_id: str, callback: str) -> bool:
        """Run a finished run's DAG-level callback; False when it is not due (see
        `dispatch.claim_callback`: at most once per finish of the run, whatever the messages)."""
        if self.failure is not None:
            raise EngineDied(f"the worker's engine died: {self.failure!r}")
        with self.store.begin() as conn:
            claim = dispatch.claim_callback(
                conn, dag_id, run_id, callback, self.specs, now=self.store.now()
            )
        if claim.workload is None:
            log.warning(
                "callback.refused dag=%s run=%s callback=%s: %s",
                dag_id,
                run_id,
                callback,
                claim.refusal,
            )
            return False
        request = CallbackRequest(claim.workload, Future())
        self._post(request)
        return request.done.result()

    def release(self) -> None:
        """Claim nothing more: each try not claimed yet gets `Released` (the worker stops)."""
        self._release.set()
        self._wake()

    def hand_back(self) -> None:
        """Kill the tries still running and record them as handed back (the grace is over)."""
        self._release.set()
        self._hand_back.set()
        self._wake()

    def stop(self) -> None:
        """Stop the warm processes and record what they said; call after the last run_*."""
        self._stop.set()
        self._wake()
        self._thread.join()
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)

    def _post(self, request: TryRequest | CallbackRequest) -> None:
        with self._post_lock:
            if self.failure is not None:
                raise EngineDied(f"the worker's engine died: {self.failure!r}")
            if self._stop.is_set():
                raise RuntimeError("the worker's engine is stopped")
            self._inbox.put(request)
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"w")

    # ------------------------------------------------------------------ the pump thread

    def _pump(self) -> None:
        """The engine thread. An error it does not expect ends the worker (see `_die`)."""
        try:
            self._rounds.run()
        except BaseException as exc:
            self._die(exc)

    def _die(self, exc: BaseException) -> None:
        """The engine cannot go on: answer every waiting Celery thread, stop the warm
        processes (their tries are killed), and tell the worker to exit (`on_death`).

        A worker without an engine would heartbeat on while its claimed tries never end and
        its messages wait forever; exiting lets systemd restart it and the schedulers fail
        its tries at once (its component is marked stopped) and retry them elsewhere.
        Tries not claimed yet are `Released`: their Celery threads send them again at once.
        """
        log.critical(
            "worker.engine_died: %s: %s; the worker stops", type(exc).__name__, exc, exc_info=exc
        )
        with self._post_lock:
            self.failure = exc
        self._rounds.answer_all()
        with contextlib.suppress(Exception):
            self._rounds.pool.stop(0.0)
        if self._on_death is not None:
            self._on_death(exc)
