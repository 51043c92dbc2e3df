"""The engine of a remote worker (`drayman worker`): claim, run and record tries in batches.

A broker message names one or two try ids (or a finished run and a callback name) and nothing
else. The Celery thread that received it hands the ids to `RemoteRunner.run_tries` and waits;
one pump thread does the rest, a round at a time:

1. claim: the try ids that arrived since the last round, as many as there are free slots
   (the rest wait, and are released to be sent again after `worker_hold_s`), in one
   transaction. The workloads are rebuilt from the store with the scheduler's own code
   (`scheduler.dispatch`) and the tries are taken through the fence (ADR 4): only a try that
   is QUEUED and current is claimed. A redelivered, stale or forged message claims nothing
   and runs nothing.
2. run: the claimed tries go to warm worker processes on this host (the local executor's
   machinery, ADR 3: one fork per try), which send back outcomes and their logs' chunks.
3. record: the outcomes and the log chunks of the round, in one transaction; then the
   waiting Celery threads return (their messages are acknowledged only now) and the
   schedulers are woken (`bell`).

Under load a round carries many tries, so the database sees a few transactions per round
instead of three per try; when idle, a round carries one and costs no latency. A database
that is away is retried every `RETRY_S` without losing a claim, an outcome or a chunk; after
a commit that may or may not have happened, the retry first asks what was stored.

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
import functools
import logging
import os
import queue
import select
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, InvalidStateError, wait
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from drayman.bundles.cache import BundleCache
from drayman.config import Settings
from drayman.executors.local import LocalExecutor
from drayman.runner.execute import hostname
from drayman.scheduler import dispatch
from drayman.spec import DagSpec
from drayman.store import dags as dag_store
from drayman.store import logs as log_store
from drayman.store import tries as try_store
from drayman.store import try_claims, try_liveness
from drayman.store.bundles import load_archive
from drayman.store.engine import Store
from drayman.store.rows import DagRunRow
from drayman.workloads import (
    CallbackDone,
    CallbackWorkload,
    LogChunks,
    TryOutcome,
    TryWorkload,
)

log = logging.getLogger("drayman.worker")

RETRY_S = 1.0  # after a database error: the next attempt of a claim or a record
EXECUTOR_BEAT_S = 1.0  # how often the warm processes are checked (dead ones replaced)
FINAL_RECORD_S = 30.0  # on stop: how long unrecorded outcomes are retried before giving up
RUN_CACHE_SIZE = 1024  # run rows kept by id (see RunCache)


class SpecCache:
    """Serialized DAGs by (dag_id, bundle version): a version never changes, so never stale."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._specs: dict[tuple[str, str], DagSpec] = {}

    def __call__(self, dag_id: str, version: str) -> DagSpec:
        key = (dag_id, version)
        spec = self._specs.get(key)
        if spec is None:
            with self.store.read() as conn:
                spec = self._specs[key] = dag_store.load_spec(conn, dag_id, version)
        return spec


class RunCache:
    """Run rows by id, for building workloads: a query per claim fewer.

    What a workload takes from a run (ids, dates, bundle version, params, conf) is written
    once, when the run is created; only its state and start and end dates change, which no
    workload reads. Ids are never reused, so a cached row is never stale for that use.
    """

    def __init__(self, size: int = RUN_CACHE_SIZE) -> None:
        self.size = size
        self._rows: dict[int, DagRunRow] = {}

    def rows(self, conn: Connection, run_ids: Iterable[int]) -> dict[int, DagRunRow]:
        """The rows of `run_ids`, reading from the store only those not cached."""
        wanted = set(run_ids)
        missing = wanted - self._rows.keys()
        if missing:
            if len(self._rows) + len(missing) > self.size:
                self._rows.clear()  # simpler than LRU; a refill is one query
            self._rows.update(dispatch.runs_by_id(conn, list(missing)))
        return {run_id: self._rows[run_id] for run_id in wanted if run_id in self._rows}


@dataclass
class Claimed:
    """What one claim took: the workloads to run, and the tries it failed instead because
    their workloads could not be built (recorded failed in the claim's transaction)."""

    workloads: list[TryWorkload] = field(default_factory=list)
    failed: list[try_store.Recorded] = field(default_factory=list)
    # tries of a queue this worker does not serve: left QUEUED for a worker that does
    refused: list[int] = field(default_factory=list)


def claim_tries(
    conn: Connection,
    try_ids: Sequence[int],
    spec_of: Callable[[str, str], DagSpec],
    *,
    worker_id: int | None,
    now: datetime,
    runs: RunCache | None = None,
    queues: Collection[str] | None = None,
) -> Claimed:
    """Claim the tries among `try_ids` that are QUEUED and current; their workloads.

    A try whose workload cannot be rebuilt fails here, alone, with the reason in its log
    (`dispatch.fail_undispatchable`): it is never left claimed with nothing running it.
    A try of a queue not in `queues` (None: any) is refused and left QUEUED: a message only
    names it in the wrong queue if it was forged or misrouted, and the scheduler's own
    message, or its resend after `queued_timeout_s`, reaches a worker of its queue.
    """
    tries = try_claims.lock_claimable(conn, try_ids)
    rows = None if runs is None else runs.rows(conn, [t.dag_run_id for t in tries])
    built = dispatch.try_workloads(conn, tries, spec_of, rows)
    claimed = Claimed()
    for workload in built.workloads:
        if queues is None or workload.queue in queues:
            claimed.workloads.append(workload)
            continue
        claimed.refused.append(workload.try_id)
        log.warning(
            "try.refused try_id=%s queue=%s: this worker serves %s; left queued for a "
            "worker of its queue",
            workload.try_id,
            workload.queue,
            ",".join(sorted(queues)),
        )
    taken = try_claims.record_claimed(
        conn,
        [w.try_id for w in claimed.workloads],
        started_at=now,
        hostname=hostname(),
        pid=os.getpid(),
        worker_id=worker_id,
    )
    if taken != len(claimed.workloads):  # the rows are locked: only a bug of ours gets here
        raise RuntimeError(f"claimed {taken} of {len(claimed.workloads)} locked tries")
    for item in built.failed:
        log.error("try.undispatchable try_id=%s: %s", item.try_id, item.error)
    claimed.failed = dispatch.fail_undispatchable(
        conn, built.failed, spec_of, hostname=hostname(), now=now
    )
    return claimed


class EngineDied(Exception):
    """The worker's engine thread ended on an error: this worker runs and records nothing more."""


class Released(Exception):
    """This worker let a try go unclaimed (no free slot for `worker_hold_s`, or it is
    stopping): the try is still QUEUED, for another worker once its id is sent again."""

    def __init__(self, try_id: int) -> None:
        super().__init__(f"try {try_id} released unclaimed")
        self.try_id = try_id


@dataclass
class _TryRequest:
    try_id: int
    done: Future[TryOutcome | None]
    arrived: float = field(default_factory=time.monotonic)


@dataclass
class _CallbackRequest:
    workload: CallbackWorkload
    done: Future[bool]


@dataclass
class _Running:
    workload: TryWorkload
    done: Future[TryOutcome | None]


class RemoteRunner:
    """Runs the tries a worker is sent; see the module docstring.

    `run_tries` and `run_callback` may be called from any thread; everything else happens on
    the pump thread, which alone touches the executor.
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
        self.queues = None if queues is None else frozenset(queues)
        self.settings = replace(settings, parallelism=concurrency)
        self._concurrency = concurrency
        self.store = store
        self.worker_id = worker_id
        self.specs = SpecCache(store)
        self.runs = RunCache()
        self._bell = bell
        self._executor = LocalExecutor(self.settings, min_warm=concurrency, relay=True)
        self._bundle_cache = BundleCache(settings.bundle_cache)
        self._bundles: set[str] = set()  # versions known to be in the cache
        self._inbox: queue.SimpleQueue[_TryRequest | _CallbackRequest] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        self._to_claim: list[_TryRequest] = []
        self._running: dict[int, _Running] = {}
        self._callbacks: dict[int, _CallbackRequest] = {}  # by id() of the workload
        self._outcomes: list[TryOutcome] = []
        self._chunks: list[LogChunks] = []
        self._unsure = False  # the last record failed: it may have committed all the same
        self._retry_at = 0.0
        self._failing = False
        self._hand_back = threading.Event()
        self._release = threading.Event()
        self._handed_back = False
        self._stop = threading.Event()
        # what ended the engine thread, if an error did; set under _post_lock, so that every
        # request posted before it is answered by the dying engine and none is posted after
        self.failure: BaseException | None = None
        self._post_lock = threading.Lock()
        self._on_death = on_death
        self._thread = threading.Thread(target=self._pump, name="drayman-engine", daemon=True)

    # --------------------------------------------------------------------- any thread

    def start(self) -> None:
        self._executor.start()
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
                self._post(_TryRequest(try_id, done))
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
        request = _CallbackRequest(claim.workload, Future())
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

    def _post(self, request: _TryRequest | _CallbackRequest) -> None:
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
            self._rounds()
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
        self._answer_all()
        with contextlib.suppress(Exception):
            self._executor.stop(0.0)
        if self._on_death is not None:
            self._on_death(exc)

    def _drain_inbox(self) -> Iterator[_TryRequest | _CallbackRequest]:
        """The requests posted to this engine so far, taken off its inbox one at a time,
        without waiting for more."""
        while True:
            try:
                yield self._inbox.get_nowait()
            except queue.Empty:
                return

    def _answer_all(self) -> None:
        """Answer every request this engine holds; nothing of it will run here."""
        for request in self._drain_inbox():
            if isinstance(request, _CallbackRequest):
                self._callbacks[id(request.workload)] = request
            else:
                self._to_claim.append(request)
        for waiting in self._to_claim:
            _answer(waiting.done, exception=Released(waiting.try_id))
        for running in self._running.values():
            _answer(running.done, result=None)
        for callback in self._callbacks.values():
            _answer(callback.done, result=False)
        self._to_claim, self._running, self._callbacks = [], {}, {}

    def _rounds(self) -> None:
        next_beat = time.monotonic() + EXECUTOR_BEAT_S
        while not self._stop.is_set():
            self._wait(min(next_beat, self._retry_at or next_beat))
            if self._hand_back.is_set() and not self._handed_back:
                self._give_back_running()
            self._take_requests()
            self._collect()
            self._store_round()
            if time.monotonic() >= next_beat:
                self._release_held()
                self._stop_ended_tries()
                self._executor.heartbeat()
                next_beat = time.monotonic() + EXECUTOR_BEAT_S
        self._shut_down()

    def _wait(self, until: float) -> None:
        fds = [self._wake_r]
        executor_fd = self._executor.fileno()
        if executor_fd is not None:
            fds.append(executor_fd)
        readable, _, _ = select.select(fds, [], [], max(0.0, until - time.monotonic()))
        if self._wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._wake_r, 4096):
                    pass

    def _take_requests(self) -> None:
        for request in self._drain_inbox():
            if isinstance(request, _CallbackRequest):
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

    def _claimable(self) -> list[_TryRequest]:
        """The waiting requests a claim takes now: as many as there are free slots.

        A slot is free when its warm process has no try: the outcomes not recorded yet
        freed theirs, so the round that records them claims the next tries too.
        """
        busy = len(self._running) - len(self._outcomes) + len(self._callbacks)
        return self._to_claim[: max(0, self._concurrency - busy)]

    def _take_claimable(self) -> list[_TryRequest]:
        requests = self._claimable()
        del self._to_claim[: len(requests)]
        return requests

    def _store_round(self) -> bool:
        """Record the round's outcomes and claim its new tries; True when nothing is left.

        One transaction for both saves a commit per round; while the database is failing,
        each goes alone (outcomes first), so a claim that keeps failing never holds up them.
        """
        if not (self._claimable() or self._outcomes or self._chunks):
            return True
        if time.monotonic() < self._retry_at:
            return False
        if self._failing:
            return self._record() and self._claim()
        requests = self._take_claimable()
        outcomes, self._outcomes = self._outcomes, []
        chunks, self._chunks = self._chunks, []
        try:
            with self.store.begin() as conn:
                recorded = self._write_outcomes(conn, outcomes, chunks)
                claimed = self._claim_in(conn, requests)
        except Exception as exc:
            self._to_claim = requests + self._to_claim
            self._outcomes, self._chunks = outcomes + self._outcomes, chunks + self._chunks
            self._unsure = bool(outcomes or chunks)
            self._failed("record" if outcomes or chunks else "claim", exc)
            return False
        self._succeeded()
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
            self._failed("claim", exc)
            return False
        self._succeeded()
        self._claimed(requests, claimed)
        return True

    def _claim_in(self, conn: Connection, requests: list[_TryRequest]) -> Claimed:
        if not requests:
            return Claimed()
        return claim_tries(
            conn,
            [r.try_id for r in requests],
            self.specs,
            worker_id=self.worker_id,
            now=datetime.now(UTC),
            runs=self.runs,
            queues=self.queues,
        )

    def _claimed(self, requests: list[_TryRequest], claimed: Claimed) -> None:
        """Start what the claim took; answer "not run" to the rest."""
        if not requests:
            return
        by_id = {w.try_id: w for w in claimed.workloads}
        logged = {r.try_id for r in claimed.failed} | set(claimed.refused)
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
                self._running[request.try_id] = _Running(workload, request.done)
                log.info(
                    "task.started try_id=%s task=%s.%s",
                    workload.try_id,
                    workload.run.dag_id,
                    workload.task_id,
                )
        if claimed.failed and self._bell is not None:  # their runs move on: failed tries
            self._bell(*{r.dag_run_id for r in claimed.failed})
        self._fetch_bundles(claimed.workloads)
        self._executor.submit(claimed.workloads)

    def _fetch_bundles(self, workloads: Sequence[TryWorkload | CallbackWorkload]) -> None:
        """Put each new bundle version in the cache before a warm process needs it.

        Fetched here, once, instead of by each warm process, which would first have to import
        SQLAlchemy and connect. A failure is left to the warm process, which fails the try
        with the reason in its log.
        """
        for version in {w.run.bundle_version for w in workloads} - self._bundles:
            try:
                self._bundle_cache.path(version, functools.partial(self._load_archive, version))
            except Exception as exc:
                log.warning("bundle.fetch_failed version=%s: %s", version[:12], exc)
            else:
                self._bundles.add(version)

    def _load_archive(self, version: str) -> bytes:
        with self.store.read() as conn:
            return load_archive(conn, version)

    def _start_callback(self, request: _CallbackRequest) -> None:
        if self._handed_back:
            request.done.set_result(False)
            return
        self._callbacks[id(request.workload)] = request
        self._fetch_bundles([request.workload])
        self._executor.submit([request.workload])

    def _collect(self) -> None:
        for event in self._executor.events():
            if not isinstance(event, TryOutcome) or event.try_id not in self._running:
                continue  # a start: the claim recorded it
            if self._handed_back and not event.succeeded:
                error = f"handed back: the worker stopped after its grace period ({event.error})"
                event = replace(event, handed_back=True, error=error)
            self._outcomes.append(event)
        for item in self._executor.relayed():
            if isinstance(item, LogChunks):
                self._chunks.append(item)
            elif isinstance(item, CallbackDone):
                request = self._callbacks.pop(id(item.workload), None)
                if request is not None:
                    request.done.set_result(True)

    def _record(self) -> bool:
        """Store the log chunks and outcomes alone; True when nothing is left to store."""
        if not (self._outcomes or self._chunks):
            return True
        if time.monotonic() < self._retry_at:
            return False
        outcomes, chunks = self._outcomes, self._chunks
        try:
            with self.store.begin() as conn:
                recorded = self._write_outcomes(conn, outcomes, chunks)
        except Exception as exc:
            self._unsure = True
            self._failed("record", exc)
            return False
        unsure, self._unsure = self._unsure, False
        self._succeeded()
        self._outcomes, self._chunks = [], []
        self._recorded(outcomes, recorded, unsure=unsure)
        return True

    def _write_outcomes(
        self, conn: Connection, outcomes: list[TryOutcome], chunks: list[LogChunks]
    ) -> list[try_store.Recorded]:
        """After a commit that may have happened, only what the store does not hold yet."""
        if self._unsure:
            chunks = log_store.not_yet_stored(conn, chunks)
        log_store.append_many(conn, chunks, now=self.store.now())
        delays = {
            s.try_id: self._retry_delay_s(s) for s in try_store.retry_subjects(conn, outcomes)
        }
        return try_store.record_outcomes(conn, outcomes, retry_delays=delays)

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
        reported = {o.try_id for o in self._outcomes}
        running = [try_id for try_id in self._running if try_id not in reported]
        if not running or self._failing:
            return
        try:
            with self.store.read() as conn:
                ended = try_liveness.ended_among(conn, running)
        except Exception as exc:  # the database is away: the next beat asks again
            log.debug("worker.ended_check_failed: %s", exc)
            return
        for try_id in ended:
            log.warning("try.stopping try_id=%s: the store ended it; killing its process", try_id)
            self._executor.cancel(try_id)

    def _give_back_running(self) -> None:
        """The grace is over: kill every try and take no more (their outcomes are collected)."""
        self._handed_back = True
        self._release.set()
        if self._running:
            log.warning("worker.hand_back tries=%s", ",".join(map(str, sorted(self._running))))
        self._executor.stop(0.0)

    def _shut_down(self) -> None:
        if not self._handed_back:
            self._give_back_running()
        self._take_requests()  # nothing more is claimed: each request is answered
        self._collect()
        deadline = time.monotonic() + FINAL_RECORD_S
        while not self._store_round() and time.monotonic() < deadline:
            time.sleep(max(0.0, self._retry_at - time.monotonic()))
        for running in self._running.values():  # the database never came back
            running.done.set_result(None)
        for request in self._callbacks.values():
            request.done.set_result(False)

    def _failed(self, what: str, exc: Exception) -> None:
        self._retry_at = time.monotonic() + RETRY_S
        if not self._failing:
            self._failing = True
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            log.error(
                "worker.%s_failed: %s: %s; retrying every %.0f s",
                what,
                type(exc).__name__,
                first,
                RETRY_S,
            )

    def _succeeded(self) -> None:
        self._retry_at = 0.0
        if self._failing:
            self._failing = False
            log.info("worker.database_back: claims and outcomes are recorded again")


def _answer(
    done: Future[Any], *, result: object = None, exception: BaseException | None = None
) -> None:
    """Settle `done` unless it already is (a request may be answered twice as the engine dies)."""
    with contextlib.suppress(InvalidStateError):
        if exception is not None:
            done.set_exception(exception)
        else:
            done.set_result(result)
