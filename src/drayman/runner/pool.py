"""The warm-process pool: warm worker processes on this machine, each running one workload.

Warm processes are forked from a multiprocessing forkserver that has drayman, the authoring
API and Jinja imported (`drayman.runner.preload`), so starting one is cheap and its pages are
shared with its siblings; each in turn forks one child per try (see `drayman.runner.process`).
`min_warm` processes wait from `start()`; more start on demand up to `parallelism`, and those
idle longer than `worker_idle_s` exit.

One reader thread (`drayman.runner.reader`) waits on every process and hands what it reads
to the owner's thread. All other state — which process runs what, the queue of waiting
workloads — belongs to the thread that calls the pool's methods.

The pool reaches the warm process's code only by name (`protocol.enter_warm_process`): the
scheduler and `drayman worker`, which own pools, never import the authoring API through it.
Its owners: the local executor (`drayman.executors.local`) and the remote worker's engine
(`drayman.worker`), which runs its tries with `relay=True`: warm processes then also send
each try's log as numbered chunks, and the pool says when each DAG callback is over;
`relayed()` hands both over.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import queue
import select
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from drayman.config import Settings
from drayman.exceptions import ExecutorError
from drayman.runner.host import hostname
from drayman.runner.isolation import settings_for_workers
from drayman.runner.preload import WARM_PROCESS_PRELOAD
from drayman.runner.protocol import Cancel, Kill, Stop, WorkerDone, encode
from drayman.runner.reader import DIED, Reader
from drayman.runner.trylog import TryLog, try_log_path
from drayman.runner.warm_process import (
    WarmProcess,
    close_warm_process,
    kill_group,
    kill_warm_process,
    start_warm_process,
    try_id_of,
)
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

log = logging.getLogger("drayman.executors.local")  # its name before issue 11, kept for filters
KILL_WAIT_S = 3.0  # after Kill: how long a worker gets to report before it is killed itself
EXIT_WAIT_S = 5.0  # after Stop: how long a worker gets to exit


class WarmPool:
    """Runs workloads in warm local processes; see the module docstring."""

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
        self.echo_logs = echo_logs
        self.relay = relay
        self._relayed: list[LogChunks | CallbackDone] = []
        self.min_warm = max(0, min(min_warm, settings.parallelism))
        self._mp = multiprocessing.get_context("forkserver")
        self._workers: dict[int, WarmProcess] = {}
        self._waiting: deque[Workload] = deque()
        self._events: list[ExecutorEvent] = []
        self._reader: Reader | None = None
        self._next_key = 0
        self._stopping = False

    # ------------------------------------------- what an executor does (executors/base.py)

    def start(self) -> None:
        if self._reader is not None:
            raise ExecutorError("the local executor is already started")
        self._mp.set_forkserver_preload(list(WARM_PROCESS_PRELOAD))
        self._reader = Reader()
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
        running = {try_id_of(worker.workload) for worker in busy}
        unreported = sum(
            1 for e in self._events if isinstance(e, TryOutcome) and e.try_id not in running
        )
        return max(0, self.settings.parallelism - len(busy) - len(self._waiting) - unreported)

    def check_running(self) -> None:
        """Raise unless workloads may be submitted: started, and not stopped."""
        if self._reader is None or self._stopping:
            raise ExecutorError(
                "the local executor is not running: start() it, and never submit after stop()"
            )

    def submit(self, workloads: Sequence[Workload]) -> None:
        self.check_running()
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
        running = [try_id_of(w.workload) for w in self._workers.values() if not w.outcome_sent]
        waiting = [try_id_of(workload) for workload in self._waiting]
        return [try_id for try_id in (*running, *waiting) if try_id is not None]

    def cancel(self, try_id: int) -> None:
        for worker in self._workers.values():
            if try_id_of(worker.workload) == try_id and not worker.outcome_sent:
                self._send(worker, Cancel(try_id))
                return
        for workload in list(self._waiting):
            if try_id_of(workload) == try_id:
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
            kill_warm_process(worker)
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

    def _on_message(self, worker: WarmProcess, message: object) -> None:
        if message is DIED:
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

    def _on_death(self, worker: WarmProcess) -> None:
        del self._workers[worker.key]
        worker.process.join(timeout=1.0)
        code = worker.process.exitcode
        lost = worker.workload if not worker.outcome_sent else None
        self._callback_done(worker.workload)
        if isinstance(lost, TryWorkload):
            if worker.started is not None and worker.started.pid != worker.process.pid:
                # The try's own process group outlives its worker: it must not run on unseen.
                kill_group(worker.started.pid)
            self._report_lost(lost, worker.started, code)
        close_warm_process(worker)
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

    # ------------------------------------------------------------------------------ workers

    def _dispatch(self) -> None:
        while self._waiting and not self._stopping:
            worker = self._idle_worker() or self._spawn_if_room()
            if worker is None:
                return
            workload = self._waiting.popleft()
            try:
                data = encode(workload)
            except Exception as exc:  # e.g. a conf too deep to pickle: only this try fails
                self._report_unstarted(workload, dispatch_error(exc))
                continue
            worker.workload = workload
            if not self._send_bytes(worker, data):
                worker.workload = None
                self._waiting.appendleft(workload)

    def _idle_worker(self) -> WarmProcess | None:
        idle = [w for w in self._workers.values() if not w.busy and not w.retiring]
        # The most recently used one: the others stay idle long enough to be retired.
        return max(idle, key=lambda w: w.idle_since, default=None)

    def _spawn_if_room(self) -> WarmProcess | None:
        if self._live_count() >= self.settings.parallelism:
            return None
        return self._spawn()

    def _live_count(self) -> int:
        return sum(1 for worker in self._workers.values() if not worker.retiring)

    def _spawn(self) -> WarmProcess:
        assert self._reader is not None
        key = self._next_key
        self._next_key += 1
        worker = start_warm_process(
            self._mp, key, (self._worker_settings, self.echo_logs, self.relay)
        )
        self._workers[key] = worker
        self._reader.watch(key, worker.conn, worker.process.sentinel)
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

    def _retire(self, worker: WarmProcess) -> None:
        worker.retiring = True
        self._send(worker, Stop())

    def _abort(self, worker: WarmProcess) -> None:
        """Kill what a worker runs now (the grace is over); it reports the try, then exits."""
        self._send(worker, Kill())

    def _send(self, worker: WarmProcess, message: Cancel | Kill | Stop) -> bool:
        return self._send_bytes(worker, encode(message))

    def _send_bytes(self, worker: WarmProcess, data: bytes) -> bool:
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
