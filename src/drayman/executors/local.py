"""The local executor: a pool of warm worker processes on this machine.

Workers are forked from a multiprocessing forkserver that has drayman, the authoring API and
Jinja imported, so starting one is cheap and its pages are shared with its siblings; each
worker in turn forks one child per try (see `drayman.runner.process`). `min_warm` workers
wait from `start()`; more start on demand up to `parallelism`, and those idle longer than
`worker_idle_s` exit.

One reader thread waits on every worker's connection and process sentinel and hands what it
reads to the scheduler's thread through a queue, waking it through a pipe (`fileno()`). All
other state — which worker runs what, the queue of waiting workloads — belongs to the thread
that calls the executor's methods; the reader thread never touches it.

A remote worker's engine (`drayman.runner.remote`) runs its tries with `relay=True`: workers
then also send each try's log as numbered chunks, and the executor says when each DAG
callback is over; `relayed()` hands both over.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import logging
import multiprocessing
import os
import pickle
import queue
import select
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from drayman.bundles.cache import BundleCache
from drayman.bundles.parse_child import DAG_MODULES
from drayman.config import Settings
from drayman.exceptions import ExecutorError
from drayman.executors.worker_messages import RefusedMessage, decode
from drayman.runner.execute import hostname
from drayman.runner.isolation import settings_for_workers
from drayman.runner.trylog import TryLog, try_log_path
from drayman.runner.worker import WorkerDone, fetch_archive
from drayman.runner.worker import main as worker_main
from drayman.workloads import (
    CallbackDone,
    CallbackWorkload,
    ExecutorEvent,
    LogChunks,
    TryOutcome,
    TryStarted,
    TryWorkload,
    Workload,
    dispatch_error,
)

log = logging.getLogger("drayman.executors.local")

# Imported once in the forkserver, so every worker shares their pages instead of importing
# them again: the runner, what every DAG file imports, and what it pulls in on first use.
# All of it: with run_as_user a try imports its DAG file as a user who may not be able to
# read drayman's installation (nor the standard library) to import it then.
PRELOAD = ["drayman.runner.worker", *DAG_MODULES]
log = logging.getLogger("drayman.executors.local")
KILL_WAIT_S = 3.0  # after "kill": how long a worker gets to report before it is killed itself
EXIT_WAIT_S = 5.0  # after "stop": how long a worker gets to exit


@dataclass
class _Worker:
    key: int
    process: BaseProcess
    conn: Connection
    workload: Workload | None = None
    started: TryStarted | None = None  # of the running try, once the worker said so
    outcome_sent: bool = False
    idle_since: float = field(default_factory=time.monotonic)
    retiring: bool = False  # told to exit, or said it will: never given work again

    @property
    def busy(self) -> bool:
        return self.workload is not None


class LocalExecutor:
    """Runs workloads in warm local worker processes; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        echo_logs: bool = False,
        min_warm: int = 2,
        relay: bool = False,
    ) -> None:
        self.settings = settings
        # what warm workers, and so tries, get: no password (drayman.runner.isolation)
        self._worker_settings = settings_for_workers(settings)
        self._bundle_cache = BundleCache(settings.bundle_cache)
        self._cached: set[str] = set()  # bundle versions known to be in the cache
        self.echo_logs = echo_logs
        self.relay = relay
        self._relayed: list[LogChunks | CallbackDone] = []
        self.min_warm = max(0, min(min_warm, settings.parallelism))
        self._mp = multiprocessing.get_context("forkserver")
        self._workers: dict[int, _Worker] = {}
        self._waiting: deque[Workload] = deque()
        self._events: list[ExecutorEvent] = []
        self._reader: _Reader | None = None
        self._next_key = 0
        self._stopping = False

    # ------------------------------------------------------------------ the Executor protocol

    def start(self) -> None:
        if self._reader is not None:
            raise ExecutorError("the local executor is already started")
        self._mp.set_forkserver_preload(PRELOAD)
        self._reader = _Reader()
        for _ in range(self.min_warm):
            self._spawn()

    def open_slots(self) -> int:
        """Slots for new tries. A try holds its slot until its outcome is handed out by
        `events()`, not only until its worker is done: until the scheduler records that outcome
        the store counts the try queued or running, and a slot freed by a `heartbeat()` in
        mid-tick would let the scheduler queue more than `parallelism` tries there."""
        if self._stopping:
            return 0
        busy = [worker for worker in self._workers.values() if worker.busy]
        running = {_try_id(worker.workload) for worker in busy}
        unreported = sum(
            1 for e in self._events if isinstance(e, TryOutcome) and e.try_id not in running
        )
        return max(0, self.settings.parallelism - len(busy) - len(self._waiting) - unreported)

    def submit(self, workloads: Sequence[Workload]) -> None:
        if self._reader is None or self._stopping:
            raise ExecutorError(
                "the local executor is not running: start() it, and never submit after stop()"
            )
        self._fetch_bundles(workloads)
        self._waiting.extend(workloads)
        self._pump()

    def events(self) -> list[ExecutorEvent]:
        if self._reader is not None:
            if self._reader.failure is not None:
                failure = self._reader.failure
                raise ExecutorError(f"the local executor's reader failed: {failure!r}") from failure
            self._reader.clear_wakeup()
        self._pump()
        events, self._events = self._events, []
        return events

    def fileno(self) -> int | None:
        return None if self._reader is None else self._reader.wakeup_fd

    def relayed(self) -> list[LogChunks | CallbackDone]:
        """With `relay`: log chunks and ended callbacks since the last call (after `events()`)."""
        relayed, self._relayed = self._relayed, []
        return relayed

    def running_try_ids(self) -> list[int]:
        running = [_try_id(w.workload) for w in self._workers.values() if not w.outcome_sent]
        waiting = [_try_id(workload) for workload in self._waiting]
        return [try_id for try_id in (*running, *waiting) if try_id is not None]

    def cancel(self, try_id: int) -> None:
        for worker in self._workers.values():
            if _try_id(worker.workload) == try_id and not worker.outcome_sent:
                self._send(worker, f"cancel {try_id}")
                return
        for workload in list(self._waiting):
            if _try_id(workload) == try_id:
                self._waiting.remove(workload)
                self._report_unstarted(workload, "cancelled before it started")
                return

    def heartbeat(self) -> None:
        self._pump()
        if self._reader is None or self._stopping:
            return
        self._retire_idle(time.monotonic())
        while self._live_count() < self.min_warm:
            self._spawn()

    def stop(self, grace_s: float) -> None:
        """See the protocol; tries still waiting for a worker are reported failed."""
        if self._reader is None or self._stopping:
            return
        self._stopping = True
        while self._waiting:
            self._report_unstarted(self._waiting.popleft(), "executor stopped before it started")
        for worker in list(self._workers.values()):
            if not worker.busy:
                self._retire(worker)
        self._wait_until(lambda: not any(w.busy for w in self._workers.values()), grace_s)
        for worker in list(self._workers.values()):
            if worker.busy:
                self._abort(worker)
        self._wait_until(lambda: not self._workers, KILL_WAIT_S)
        for worker in list(self._workers.values()):
            _kill_worker(worker)
        self._wait_until(lambda: not self._workers, EXIT_WAIT_S)
        self._close()

    # ---------------------------------------------------------------------- message handling

    def _pump(self) -> None:
        """Apply what the reader thread received, then hand out waiting workloads."""
        if self._reader is None:
            return
        while True:
            try:
                key, message = self._reader.inbox.get_nowait()
            except queue.Empty:
                break
            worker = self._workers.get(key)
            if worker is not None:
                self._on_message(worker, message)
        self._dispatch()

    def _on_message(self, worker: _Worker, message: object) -> None:
        if message is _DIED:
            self._on_death(worker)
        elif isinstance(message, TryStarted):
            worker.started = message
            self._events.append(message)
        elif isinstance(message, TryOutcome):
            worker.outcome_sent = True
            self._events.append(message)
        elif isinstance(message, LogChunks):
            self._relayed.append(message)
        elif isinstance(message, WorkerDone):
            if message.chunks is not None:
                self._relayed.append(message.chunks)
            if message.outcome is not None:
                self._events.append(message.outcome)
            self._callback_done(worker.workload)
            worker.workload, worker.started, worker.outcome_sent = None, None, False
            worker.idle_since = time.monotonic()
            if message.retiring:
                worker.retiring = True
            elif self._stopping:
                self._retire(worker)

    def _on_death(self, worker: _Worker) -> None:
        del self._workers[worker.key]
        worker.process.join(timeout=1.0)
        code = worker.process.exitcode
        lost = worker.workload if not worker.outcome_sent else None
        self._callback_done(worker.workload)
        if isinstance(lost, TryWorkload):
            if worker.started is not None and worker.started.pid != worker.process.pid:
                # The try's own process group outlives its worker: it must not run on unseen.
                _kill_group(worker.started.pid)
            self._report_lost(lost, worker.started, code)
        _close_worker(worker)
        if not self._stopping and (self._live_count() < self.min_warm or self._waiting):
            self._spawn()

    def _report_lost(
        self, workload: TryWorkload, started: TryStarted | None, exitcode: int | None
    ) -> None:
        if exitcode is not None and exitcode < 0:
            how = f"killed by signal {-exitcode}"
        else:
            how = f"exit code {exitcode}"
        now = datetime.now(UTC)
        outcome = TryOutcome(
            try_id=workload.try_id,
            succeeded=False,
            started_at=started.started_at if started else now,
            ended_at=now,
            hostname=started.hostname if started else hostname(),
            pid=started.pid if started else None,
            signal=-exitcode if exitcode is not None and exitcode < 0 else None,
            error=f"worker process died ({how}) while running the try",
        )
        self._append_to_log(workload, f"failed: {outcome.error}")
        self._events.append(outcome)

    def _callback_done(self, workload: Workload | None) -> None:
        if self.relay and isinstance(workload, CallbackWorkload):
            self._relayed.append(CallbackDone(workload))

    def _report_unstarted(self, workload: Workload, why: str) -> None:
        if not isinstance(workload, TryWorkload):
            log.warning(
                "callback.not_run dag=%s run=%s callback=%s: %s",
                workload.run.dag_id,
                workload.run.run_id,
                workload.callback,
                why,
            )
            self._callback_done(workload)  # never ran: the run's state is already recorded
            return
        now = datetime.now(UTC)
        self._append_to_log(workload, f"not run: {why}")
        if self.relay:  # no warm process wrote a chunk of this try: its log starts here
            self._relayed.append(LogChunks(workload.try_id, 0, (f"[drayman] not run: {why}\n",)))
        self._events.append(
            TryOutcome(
                try_id=workload.try_id,
                succeeded=False,
                started_at=now,
                ended_at=now,
                hostname=hostname(),
                error=why,
            )
        )
        if self._reader is not None:
            self._reader.wake()

    def _append_to_log(self, workload: TryWorkload, line: str) -> None:
        with contextlib.suppress(OSError):
            try_log = TryLog(self.settings.logs_folder / try_log_path(workload))
            try:
                try_log.line(line)
            finally:
                try_log.close()

    def _fetch_bundles(self, workloads: Sequence[Workload]) -> None:
        """Put each new bundle version in the cache before a worker needs it: workers hold no
        database password to fetch one. Usually a hit (the DAG processor of this host, or a
        remote runner, extracted it already); a failure is left to the worker, which fails
        the try with the reason in its log."""
        for version in {w.run.bundle_version for w in workloads} - self._cached:
            fetch = functools.partial(fetch_archive, self.settings, version)
            try:
                self._bundle_cache.path(version, fetch)
            except Exception as exc:
                log.warning("bundle.fetch_failed version=%s: %s", version[:12], exc)
            else:
                self._cached.add(version)

    # ------------------------------------------------------------------------------ workers

    def _dispatch(self) -> None:
        while self._waiting and not self._stopping:
            worker = self._idle_worker() or self._spawn_if_room()
            if worker is None:
                return
            workload = self._waiting.popleft()
            try:
                data = _pickled(workload)
            except Exception as exc:  # e.g. a conf too deep to pickle: only this try fails
                self._report_unstarted(workload, dispatch_error(exc))
                continue
            worker.workload = workload
            if not self._send_bytes(worker, data):
                worker.workload = None
                self._waiting.appendleft(workload)

    def _idle_worker(self) -> _Worker | None:
        idle = [w for w in self._workers.values() if not w.busy and not w.retiring]
        # The most recently used one: the others stay idle long enough to be retired.
        return max(idle, key=lambda w: w.idle_since, default=None)

    def _spawn_if_room(self) -> _Worker | None:
        if self._live_count() >= self.settings.parallelism:
            return None
        return self._spawn()

    def _live_count(self) -> int:
        return sum(1 for worker in self._workers.values() if not worker.retiring)

    def _spawn(self) -> _Worker:
        assert self._reader is not None
        ours, theirs = self._mp.Pipe()
        key = self._next_key
        self._next_key += 1
        process = self._mp.Process(
            target=worker_main,
            args=(theirs, self._worker_settings, self.echo_logs, self.relay),
            name=f"drayman-worker-{key}",
            daemon=True,  # never outlives the executor, even when stop() was not called
        )
        try:
            with _main_module_hidden():
                process.start()
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        worker = _Worker(key, process, ours)
        self._workers[key] = worker
        self._reader.watch(key, ours, process.sentinel)
        return worker

    def _retire_idle(self, now: float) -> None:
        extra = self._live_count() - self.min_warm
        idle = sorted(
            (w for w in self._workers.values() if not w.busy and not w.retiring),
            key=lambda w: w.idle_since,
        )
        for worker in idle[: max(0, extra)]:
            if now - worker.idle_since >= self.settings.worker_idle_s:
                self._retire(worker)

    def _retire(self, worker: _Worker) -> None:
        worker.retiring = True
        self._send(worker, "stop")

    def _abort(self, worker: _Worker) -> None:
        """Kill what a worker runs now (the grace is over); it reports the try, then exits."""
        self._send(worker, "kill")

    def _send(self, worker: _Worker, message: str) -> bool:
        return self._send_bytes(worker, _pickled(message))

    def _send_bytes(self, worker: _Worker, data: bytes) -> bool:
        try:
            worker.conn.send_bytes(data)
        except OSError:  # it died; the reader thread reports that on its own
            worker.retiring = True
            return False
        return True

    def _wait_until(self, done: Callable[[], bool], timeout_s: float) -> None:
        assert self._reader is not None
        deadline = time.monotonic() + timeout_s
        while True:
            self._reader.clear_wakeup()
            self._pump()
            remaining = deadline - time.monotonic()
            if done() or remaining <= 0:
                return
            select.select([self._reader.wakeup_fd], [], [], remaining)

    def _close(self) -> None:
        assert self._reader is not None
        self._reader.close()
        for worker in list(self._workers.values()):
            self._on_death(worker)  # reports its try lost, if it still had one
        self._reader = None


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Keep multiprocessing from importing the program's `__main__` again in every worker.

    It does so for spawn and forkserver children, to find functions defined in the main
    script. Ours live in drayman.runner.worker, and for the `drayman` CLI the main script
    would load click, SQLAlchemy and the web app into every worker: time, and unshared memory.
    """
    main = sys.modules.get("__main__")
    saved = dict(main.__dict__) if main is not None else {}
    if main is not None:
        main.__dict__.pop("__file__", None)
        main.__spec__ = None
    try:
        yield
    finally:
        if main is not None:
            for key in ("__file__", "__spec__"):
                if key in saved:
                    main.__dict__[key] = saved[key]


def _pickled(message: Workload | str) -> bytes:
    """A plain pickle, as the worker sends them (see drayman.runner.worker)."""
    return pickle.dumps(message, pickle.HIGHEST_PROTOCOL)


def _try_id(workload: Workload | None) -> int | None:
    return workload.try_id if isinstance(workload, TryWorkload) else None


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _kill_worker(worker: _Worker) -> None:
    if worker.started is not None:
        _kill_group(worker.started.pid)
    with contextlib.suppress(ValueError):  # already closed
        worker.process.kill()


def _close_worker(worker: _Worker) -> None:
    worker.conn.close()
    worker.process.join(timeout=1.0)
    if worker.process.exitcode is None:
        worker.process.kill()
        worker.process.join()
    worker.process.close()


# ------------------------------------------------------------------------------ the reader


def _is_progress(message: object) -> bool:
    """A start or a log chunk: news that can wait a few ms to be batched with more."""
    return isinstance(message, TryStarted | LogChunks)


_DIED = object()  # in the inbox: the worker process has exited
STARTED_WAKE_DELAY_S = 0.01  # see _Reader._wake_for
MAX_REFUSALS_LOGGED = 10  # see _Reader._refused


class _News(enum.IntEnum):
    """What a batch read from the workers holds, by how soon the scheduler must hear it."""

    NONE = 0
    STARTED = 1  # only progress: tries that started, log chunks
    URGENT = 2  # an outcome, a free worker or a dead one


class _Reader:
    """The thread that waits on all workers at once; see the module docstring."""

    def __init__(self) -> None:
        self.inbox: queue.SimpleQueue[tuple[int, object]] = queue.SimpleQueue()
        self._wakeup_r, self._wakeup_w = os.pipe()
        self._control_r, self._control_w = os.pipe()
        for fd in (self._wakeup_r, self._wakeup_w, self._control_r):
            os.set_blocking(fd, False)
        self._lock = threading.Lock()
        self._watched: dict[int, tuple[Connection | None, int]] = {}
        self._version = 0  # bumped whenever _watched changes: the poller then follows it
        self._closing = False
        self.failure: BaseException | None = None
        self._wake_at: float | None = None  # a deferred wake-up for starts (reader thread only)
        self._refusals: dict[int, int] = {}  # per worker: messages refused (reader thread only)
        self._thread = threading.Thread(
            target=self._run, name="drayman-local-executor", daemon=True
        )
        self._thread.start()

    @property
    def wakeup_fd(self) -> int:
        return self._wakeup_r

    def watch(self, key: int, conn: Connection, sentinel: int) -> None:
        with self._lock:
            self._watched[key] = (conn, sentinel)
            self._version += 1
        os.write(self._control_w, b"w")

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # full: it is awake already
            os.write(self._wakeup_w, b"e")

    def clear_wakeup(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wakeup_r, 4096):
                pass

    def close(self) -> None:
        with self._lock:
            self._closing = True
        os.write(self._control_w, b"c")
        self._thread.join()
        for fd in (self._wakeup_r, self._wakeup_w, self._control_r, self._control_w):
            os.close(fd)

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # surfaced by the executor's next call, not lost here
            self.failure = exc
            self.wake()

    def _loop(self) -> None:
        """Wait on every worker's connection and sentinel with one `poll` object.

        It is kept across waits and changed only when the watched set does:
        `multiprocessing.connection.wait` builds a selector and registers every object again
        on each call, a cost paid per message.
        """
        poller = select.poll()
        polled: dict[int, object] = {self._control_r: self._control_r}
        poller.register(self._control_r, select.POLLIN)
        version = -1
        watched: dict[int, tuple[Connection | None, int]] = {}
        while True:
            with self._lock:
                if self._closing:
                    return
                if version != self._version:
                    watched, version = dict(self._watched), self._version
                    polled = _repoll(poller, polled, watched, self._control_r)
            ready: set[object] = set()
            for fd, event in poller.poll(self._timeout_ms()):
                if event & select.POLLNVAL:  # closed under us: the next re-poll drops it
                    poller.unregister(fd)
                    polled.pop(fd, None)
                elif fd in polled:
                    ready.add(polled[fd])
            if self._control_r in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._control_r, 4096)
            self._wake_for(self._collect(watched, ready))

    def _timeout_ms(self) -> int | None:
        if self._wake_at is None:
            return None
        return max(0, int((self._wake_at - time.monotonic()) * 1000) + 1)

    def _wake_for(self, news: _News) -> None:
        """Wake the scheduler now for what ends work, a little later for mere starts.

        Every wake-up costs the scheduler a transaction. A short try's start and end then
        arrive in one batch; a long one is recorded as running `STARTED_WAKE_DELAY_S` late.
        """
        now = time.monotonic()
        if news is _News.URGENT or (self._wake_at is not None and now >= self._wake_at):
            self._wake_at = None
            self.wake()
        elif news is _News.STARTED and self._wake_at is None:
            self._wake_at = now + STARTED_WAKE_DELAY_S

    def _collect(
        self, watched: dict[int, tuple[Connection | None, int]], ready: set[object]
    ) -> _News:
        news = _News.NONE
        for key, (conn, sentinel) in watched.items():
            if conn is not None and (conn in ready or sentinel in ready):
                # On death too: what it said just before it died still counts.
                news = max(news, self._receive_all(key, conn))
            if sentinel in ready:
                with self._lock:
                    del self._watched[key]
                    self._version += 1
                self.inbox.put((key, _DIED))
                news = _News.URGENT
        return news

    def _receive_all(self, key: int, conn: Connection) -> _News:
        """Every message waiting on `conn` into the inbox; on EOF stop reading it."""
        news = _News.NONE
        try:
            while _has_data(conn):
                try:
                    message = decode(conn.recv_bytes())
                except RefusedMessage as exc:  # dropped: the worker's next message still counts
                    self._refused(key, exc)
                    continue
                self.inbox.put((key, message))
                news = max(news, _News.STARTED if _is_progress(message) else _News.URGENT)
        except (EOFError, OSError):
            with self._lock:
                if key in self._watched:
                    self._watched[key] = (None, self._watched[key][1])
                    self._version += 1
        return news

    def _refused(self, key: int, exc: RefusedMessage) -> None:
        """Log a refused message; past `MAX_REFUSALS_LOGGED` of one worker, only count them (a
        flood must not fill the disk)."""
        count = self._refusals[key] = self._refusals.get(key, 0) + 1
        if count <= MAX_REFUSALS_LOGGED:
            log.error("worker %d: %s", key, exc)
        if count == MAX_REFUSALS_LOGGED:
            log.error("worker %d: further refused messages are dropped without a log line", key)


def _has_data(conn: Connection) -> bool:
    """Whether `conn` can be read without blocking (data or EOF): `Connection.poll` builds a
    selector per call."""
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    return bool(poller.poll(0))


def _repoll(
    poller: select.poll,
    polled: dict[int, object],
    watched: dict[int, tuple[Connection | None, int]],
    control_fd: int,
) -> dict[int, object]:
    """Make `poller` watch exactly `watched` (and the control pipe); the new fd -> object map.

    A connection's or sentinel's fd number may have been reused by a newer worker's: it stays
    registered and maps to the new object.
    """
    wanted: dict[int, object] = {control_fd: control_fd}
    for conn, sentinel in watched.values():
        wanted[sentinel] = sentinel
        if conn is not None and not conn.closed:
            wanted[conn.fileno()] = conn
    for fd in polled.keys() - wanted.keys():
        with contextlib.suppress(KeyError):
            poller.unregister(fd)
    for fd in wanted.keys() - polled.keys():
        poller.register(fd, select.POLLIN)
    return wanted
