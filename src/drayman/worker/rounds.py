"""The pump thread of a worker's engine: claim, run and record, a round at a time.

What a round does is told in `drayman.worker.engine`; the front there takes the Celery
threads' requests and hands them over through `Signals`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import replace
from datetime import UTC, datetime

from drayman.config import Settings
from drayman.runner.archives import BundlePrefetch
from drayman.runner.host import hostname
from drayman.runner.pool import WarmPool
from drayman.store import dispatch, try_liveness
from drayman.store import tries as try_store
from drayman.store.bundles import load_archive
from drayman.store.caches import RunCache, SpecCache
from drayman.store.engine import Connection, Store
from drayman.store.remote_claims import Claimed, claim_tries
from drayman.worker.outage import Outage
from drayman.worker.recorder import Recorder
from drayman.worker.requests import (
    CallbackRequest,
    Released,
    Running,
    Signals,
    TryRequest,
    answer,
)
from drayman.workloads import CallbackDone, LogChunks, TryOutcome

log = logging.getLogger("drayman.worker")

EXECUTOR_BEAT_S = 1.0  # how often the warm processes are checked (dead ones replaced)
FINAL_RECORD_S = 30.0  # on stop: how long unrecorded outcomes are retried before giving up


class Rounds:
    """The engine's pump thread: claims, runs and records, a round at a time.

    It alone touches the warm-process pool and what it holds. The front
    (`drayman.worker.engine.RemoteRunner`) hands it requests through `inbox`, wakes it
    through `wake_fd`, and tells it to release, hand back or stop through the three events.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        specs: SpecCache,
        signals: Signals,
        *,
        worker_id: int | None,
        concurrency: int,
        bell: Callable[..., None] | None,
        queues: frozenset[str] | None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.specs = specs
        self.runs = RunCache()
        self.worker_id = worker_id
        self.queues = queues
        self._concurrency = concurrency
        self._bell = bell
        self._inbox = signals.inbox
        self._wake_fd = signals.wake_fd
        self._release, self._hand_back, self._stop = (
            signals.release,
            signals.hand_back,
            signals.stop,
        )
        self.pool = WarmPool(settings, min_warm=concurrency, relay=True)
        # fetched here, once, instead of by each warm process, which would first have to
        # import SQLAlchemy and connect; a failure is left to the warm process, which fails
        # the try with the reason in its log
        self._bundles = BundlePrefetch(settings.bundle_cache, self._load_archive, log)
        self._to_claim: list[TryRequest] = []
        self._running: dict[int, Running] = {}
        self._callbacks: dict[int, CallbackRequest] = {}  # by id() of the workload
        self._recorder = Recorder(store, self._retry_delay_s)
        self._outage = Outage()
        self._handed_back = False

    def _drain_inbox(self) -> Iterator[TryRequest | CallbackRequest]:
        """The requests posted to this engine so far, taken off its inbox one at a time,
        without waiting for more."""
        while True:
            try:
                yield self._inbox.get_nowait()
            except queue.Empty:
                return

    def answer_all(self) -> None:
        """Answer every request this engine holds; nothing of it will run here."""
        for request in self._drain_inbox():
            if isinstance(request, CallbackRequest):
                self._callbacks[id(request.workload)] = request
            else:
                self._to_claim.append(request)
        for waiting in self._to_claim:
            answer(waiting.done, exception=Released(waiting.try_id))
        for running in self._running.values():
            answer(running.done, result=None)
        for callback in self._callbacks.values():
            answer(callback.done, result=False)
        self._to_claim, self._running, self._callbacks = [], {}, {}

    def run(self) -> None:
        """Rounds until told to stop; then the last one (`_shut_down`)."""
        next_beat = time.monotonic() + EXECUTOR_BEAT_S
        while not self._stop.is_set():
            self._wait(min(next_beat, self._outage.retry_at or next_beat))
            if self._hand_back.is_set() and not self._handed_back:
                self._give_back_running()
            self._take_requests()
            self._collect()
            self._store_round()
            if time.monotonic() >= next_beat:
                self._release_held()
                self._stop_ended_tries()
                self.pool.heartbeat()
                next_beat = time.monotonic() + EXECUTOR_BEAT_S
        self._shut_down()

    def _wait(self, until: float) -> None:
        fds = [self._wake_fd]
        executor_fd = self.pool.fileno()
        if executor_fd is not None:
            fds.append(executor_fd)
        readable, _, _ = select.select(fds, [], [], max(0.0, until - time.monotonic()))
        if self._wake_fd in readable:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._wake_fd, 4096):
                    pass

    def _take_requests(self) -> None:
        for request in self._drain_inbox():
            if isinstance(request, CallbackRequest):
                self._start_callback(request)
            elif request.try_id in self._running or any(
                r.try_id == request.try_id for r in self._to_claim
            ):
                log.warning("try.fenced try_id=%s: already running here", request.try_id)
                request.done.set_result(None)
            else:
                self._to_claim.append(request)
        if self._release.is_set():  # stopping: another worker runs what waits here
            for request in self._to_claim:
                request.done.set_exception(Released(request.try_id))
            self._to_claim = []

    def _release_held(self) -> None:
        """Release the tries that waited `worker_hold_s` for a slot here: with long tasks,
        another worker's slot may free first."""
        hold_s = self.settings.worker_hold_s
        cutoff = time.monotonic() - hold_s
        if not self._to_claim or self._to_claim[0].arrived > cutoff:  # the oldest is first
            return
        claimable = len(self._claimable())  # a prefix of the waiting requests
        kept = self._to_claim[:claimable]
        for request in self._to_claim[claimable:]:
            if request.arrived > cutoff:
                kept.append(request)
                continue
            log.info("try.released try_id=%s: no free slot here for %g s", request.try_id, hold_s)
            request.done.set_exception(Released(request.try_id))
        self._to_claim = kept

    def _claimable(self) -> list[TryRequest]:
        """The waiting requests a claim takes now: as many as there are free slots.

        A slot is free when its warm process has no try: the outcomes not recorded yet
        freed theirs, so the round that records them claims the next tries too.
        """
        busy = len(self._running) - len(self._recorder.outcomes) + len(self._callbacks)
        return self._to_claim[: max(0, self._concurrency - busy)]

    def _take_claimable(self) -> list[TryRequest]:
        requests = self._claimable()
        del self._to_claim[: len(requests)]
        return requests

    def _store_round(self) -> bool:
        """Record the round's outcomes and claim its new tries; True when nothing is left.

        One transaction for both saves a commit per round; while the database is failing,
        each goes alone (outcomes first), so a claim that keeps failing never holds up them.
        """
        if not (self._claimable() or self._recorder.pending()):
            return True
        if self._outage.too_soon():
            return False
        if self._outage.failing:
            return self._record() and self._claim()
        requests = self._take_claimable()
        outcomes, chunks = self._recorder.take()
        try:
            with self.store.begin() as conn:
                recorded = self._recorder.write(conn, outcomes, chunks)
                claimed = self._claim_in(conn, requests)
        except Exception as exc:
            self._to_claim = requests + self._to_claim
            self._recorder.put_back(outcomes, chunks)
            self._outage.failed("record" if outcomes or chunks else "claim", exc)
            return False
        self._outage.succeeded()
        self._recorded(outcomes, recorded, unsure=False)
        self._claimed(requests, claimed)
        return True

    def _claim(self) -> bool:
        """Claim the waiting tries in a transaction of their own; False when it failed."""
        requests = self._take_claimable()
        if not requests:
            return True
        try:
            with self.store.begin() as conn:
                claimed = self._claim_in(conn, requests)
        except Exception as exc:
            self._to_claim = requests + self._to_claim
            self._outage.failed("claim", exc)
            return False
        self._outage.succeeded()
        self._claimed(requests, claimed)
        return True

    def _claim_in(self, conn: Connection, requests: list[TryRequest]) -> Claimed:
        if not requests:
            return Claimed()
        return claim_tries(
            conn,
            [r.try_id for r in requests],
            self.specs,
            worker_id=self.worker_id,
            now=datetime.now(UTC),
            hostname=hostname(),
            pid=os.getpid(),
            runs=self.runs,
            queues=self.queues,
        )

    def _claimed(self, requests: list[TryRequest], claimed: Claimed) -> None:
        """Start what the claim took; answer "not run" to the rest."""
        if not requests:
            return
        _log_not_taken(claimed, self.queues)
        by_id = {w.try_id: w for w in claimed.workloads}
        logged = {r.try_id for r in claimed.failed} | {r.try_id for r in claimed.refused}
        for request in requests:
            workload = by_id.get(request.try_id)
            if workload is None:
                if request.try_id not in logged:
                    log.warning(
                        "try.fenced try_id=%s: not a queued current try; nothing run",
                        request.try_id,
                    )
                request.done.set_result(None)
            else:
                self._running[request.try_id] = Running(workload, request.done)
                log.info(
                    "task.started try_id=%s task=%s.%s",
                    workload.try_id,
                    workload.run.dag_id,
                    workload.task_id,
                )
        if claimed.failed and self._bell is not None:  # their runs move on: failed tries
            self._bell(*{r.dag_run_id for r in claimed.failed})
        self._bundles.ensure(claimed.workloads)
        self.pool.submit(claimed.workloads)

    def _load_archive(self, version: str) -> bytes:
        with self.store.read() as conn:
            return load_archive(conn, version)

    def _start_callback(self, request: CallbackRequest) -> None:
        if self._handed_back:
            request.done.set_result(False)
            return
        self._callbacks[id(request.workload)] = request
        self._bundles.ensure([request.workload])
        self.pool.submit([request.workload])

    def _collect(self) -> None:
        for event in self.pool.events():
            if not isinstance(event, TryOutcome) or event.try_id not in self._running:
                continue  # a start: the claim recorded it
            if self._handed_back and not event.succeeded:
                error = f"handed back: the worker stopped after its grace period ({event.error})"
                event = replace(event, handed_back=True, error=error)
            self._recorder.outcomes.append(event)
        for item in self.pool.relayed():
            if isinstance(item, LogChunks):
                self._recorder.chunks.append(item)
            elif isinstance(item, CallbackDone):
                request = self._callbacks.pop(id(item.workload), None)
                if request is not None:
                    request.done.set_result(True)

    def _record(self) -> bool:
        """Store the log chunks and outcomes alone; True when nothing is left to store."""
        if not self._recorder.pending():
            return True
        if self._outage.too_soon():
            return False
        outcomes, chunks = self._recorder.take()
        try:
            with self.store.begin() as conn:
                recorded = self._recorder.write(conn, outcomes, chunks)
        except Exception as exc:
            self._recorder.put_back(outcomes, chunks)
            self._outage.failed("record", exc)
            return False
        unsure, self._recorder.unsure = self._recorder.unsure, False
        self._outage.succeeded()
        self._recorded(outcomes, recorded, unsure=unsure)
        return True

    def _recorded(
        self, outcomes: list[TryOutcome], recorded: list[try_store.Recorded], *, unsure: bool
    ) -> None:
        self._finish(outcomes, {r.try_id for r in recorded}, unsure)
        if outcomes and self._bell is not None:  # the runs to re-plan; none known: all of them
            self._bell(*{r.dag_run_id for r in recorded})

    def _finish(self, outcomes: list[TryOutcome], recorded: set[int], unsure: bool) -> None:
        for outcome in outcomes:
            running = self._running.pop(outcome.try_id)
            if outcome.try_id in recorded:
                state = "success" if outcome.succeeded else "failed"
                log.info("task.finished try_id=%s state=%s", outcome.try_id, state)
            elif not unsure:
                log.warning(
                    "try.fenced try_id=%s: outcome refused, try is no longer current",
                    outcome.try_id,
                )
            running.done.set_result(outcome)

    def _retry_delay_s(self, subject: try_store.RetrySubject) -> float:
        spec = self.specs(subject.dag_id, subject.bundle_version)
        return dispatch.task_retry_delay_s(spec, subject)

    def _stop_ended_tries(self) -> None:
        """Kill the tries running here that the store ended: a person cancelled, cleared or
        marked them, or they were declared lost (ADR 12). Their outcomes will be refused."""
        reported = {o.try_id for o in self._recorder.outcomes}
        running = [try_id for try_id in self._running if try_id not in reported]
        if not running or self._outage.failing:
            return
        try:
            with self.store.read() as conn:
                ended = try_liveness.ended_among(conn, running)
        except Exception as exc:  # the database is away: the next beat asks again
            log.debug("worker.ended_check_failed: %s", exc)
            return
        for try_id in ended:
            log.warning("try.stopping try_id=%s: the store ended it; killing its process", try_id)
            self.pool.cancel(try_id)

    def _give_back_running(self) -> None:
        """The grace is over: kill every try and take no more (their outcomes are collected)."""
        self._handed_back = True
        self._release.set()
        if self._running:
            log.warning("worker.hand_back tries=%s", ",".join(map(str, sorted(self._running))))
        self.pool.stop(0.0)

    def _shut_down(self) -> None:
        if not self._handed_back:
            self._give_back_running()
        self._take_requests()  # nothing more is claimed: each request is answered
        self._collect()
        deadline = time.monotonic() + FINAL_RECORD_S
        while not self._store_round() and time.monotonic() < deadline:
            time.sleep(max(0.0, self._outage.retry_at - time.monotonic()))
        for running in self._running.values():  # the database never came back
            running.done.set_result(None)
        for request in self._callbacks.values():
            request.done.set_result(False)


def _log_not_taken(claimed: Claimed, queues: Collection[str] | None) -> None:
    """Say why the claim left tries alone: refused (another queue) or undispatchable."""
    for refused in claimed.refused:
        log.warning(
            "try.refused try_id=%s queue=%s: this worker serves %s; left queued for a "
            "worker of its queue",
            refused.try_id,
            refused.queue,
            ",".join(sorted(queues or ())),
        )
    for item in claimed.undispatchable:
        log.error("try.undispatchable try_id=%s: %s", item.try_id, item.error)
