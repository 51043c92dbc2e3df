"""A warm process of the pool (`drayman.runner.pool`): one workload at a time, each try a fork.

The process is itself a fork of the pool's forkserver, which has drayman, the authoring
API and Jinja imported; it imports each DAG file once (see `loader`) and forks a child per
try, so a try costs a fork, not an interpreter start.

The messages it exchanges with the pool that owns it: `drayman.runner.protocol`.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import sys
import traceback
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from drayman.bundles.cache import BundleCache  # at the top: the forkserver preloads it
from drayman.config import Settings
from drayman.exceptions import BundleError
from drayman.runner.archives import fetch_archive
from drayman.runner.callbacks import run_callback_workload
from drayman.runner.execute import fail_try, run_try
from drayman.runner.isolation import can_reach_database, resolve_run_as
from drayman.runner.logship import PipeLogSink
from drayman.runner.process import die_with_parent, prepare_process
from drayman.runner.protocol import Cancel, Kill, Stop, ToWarmProcess, WorkerDone, encode
from drayman.runner.supervise import Interrupt, StopTry
from drayman.workloads import CallbackWorkload, LogChunks, TryOutcome, TryWorkload, Workload

MAX_BUNDLE_VERSIONS = 4  # past this many, a worker exits after its workload to free memory


def main(conn: Connection, settings: Settings, echo_logs: bool, relay: bool = False) -> None:
    """Entry point of a worker process."""
    # What came from the forkserver is shared with every sibling worker until someone writes
    # to it; a full garbage collection writes to every object it visits. Frozen, it never does.
    gc.freeze()
    # Ctrl-C reaches the whole foreground process group; the CLI decides how to stop us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The executor starts workers as daemons (so they never outlive it), but a task forked from
    # here may use multiprocessing itself, which daemonic processes are not allowed to do.
    multiprocessing.current_process().daemon = False
    # When the executor's process is SIGKILLed, each warm process learns it from its
    # connection (EOF, or ECONNRESET when messages were left unread), kills its try and exits;
    # each try also dies with its warm process (the same request, in `process.fork`), so a
    # retry elsewhere never overlaps a try still running here. The forkserver outlives the
    # executor until its last warm process exits (each holds its "alive" pipe): this covers
    # the forkserver itself being killed.
    die_with_parent(os.getppid())
    prepare_process(resolve_run_as(settings.run_as_user))
    Worker(conn, settings, echo=sys.stdout if echo_logs else None, relay=relay).serve()


class Worker:
    """Receives workloads on `conn`, runs them, and reports what happened."""

    def __init__(
        self, conn: Connection, settings: Settings, *, echo: Any = None, relay: bool = False
    ) -> None:
        self.conn = conn
        self.settings = settings
        self.echo = echo
        self.relay = relay
        self.logs_folder = settings.logs_folder  # a Path built once, not per try
        self.bundle_dirs: dict[str, Path] = {}
        self.pending: deque[Workload] = deque()  # workloads that came in while busy
        self.stopping = False
        self.running: int | None = None  # the try whose task (not callbacks) runs now
        self.last_chunks: LogChunks | None = None  # held for the next WorkerDone

    def serve(self) -> None:
        """Run workloads until told to stop, the executor goes away, or memory asks to."""
        while True:
            workload = self._next_workload()
            if workload is None:
                return
            done = self.handle(workload)
            self.send(done)
            if done.retiring:
                return

    def handle(self, workload: Workload) -> WorkerDone:
        """Run one workload; say whether this process exits afterwards."""
        outcome = None
        if isinstance(workload, CallbackWorkload):
            self._run_callback(workload)
        else:
            outcome = self._run_try(workload)
        retiring = self.stopping or len(self.bundle_dirs) > MAX_BUNDLE_VERSIONS
        chunks, self.last_chunks = self.last_chunks, None
        return WorkerDone(retiring, outcome, chunks)

    def send(self, message: object) -> None:
        """One message to the pool, pickled here (see `drayman.runner.protocol`)."""
        self.conn.send_bytes(encode(message))

    def _receive(self) -> ToWarmProcess:
        """The owner's next message (the owner is trusted: a plain pickle)."""
        message: ToWarmProcess = self.conn.recv()
        return message

    def _hold_last_chunks(self, chunks: LogChunks) -> None:
        self.last_chunks = chunks

    def _next_workload(self) -> Workload | None:
        while not self.stopping:
            if self.pending:
                return self.pending.popleft()
            try:
                message = self._receive()
            except (EOFError, OSError):  # OSError: killed with our messages unread (ECONNRESET)
                return None
            if isinstance(message, TryWorkload | CallbackWorkload):
                return message
            if isinstance(message, Stop):
                return None
            # A cancel for a try that already ended: nothing to do.
        return None

    def _run_try(self, workload: TryWorkload) -> TryOutcome | None:
        """The try's outcome, or None when it was already sent before the callbacks ran."""
        early: list[TryOutcome] = []

        def before_callbacks(outcome: TryOutcome) -> None:
            early.append(outcome)
            self.running = None  # a cancel from now on finds nothing to cancel
            self.send(outcome)

        self.running = workload.try_id
        try:
            outcome = self._execute(workload, before_callbacks)
        except Exception as exc:  # e.g. the log cannot be written, or a bug of ours
            traceback.print_exc()
            self.stopping = True  # start over in a fresh process
            now = datetime.now(UTC)
            error = f"the worker could not run the try: {type(exc).__name__}: {exc}"
            outcome = TryOutcome(workload.try_id, False, now, now, error=error)
        finally:
            self.running = None
        return None if early else outcome

    def _execute(
        self, workload: TryWorkload, before_callbacks: Callable[[TryOutcome], None]
    ) -> TryOutcome:
        sink = None
        if self.relay:
            sink = PipeLogSink(workload.try_id, self.send, self._hold_last_chunks)
        try:
            bundle_dir = self._bundle_dir(workload.run.bundle_version)
        except Exception as exc:
            return fail_try(
                workload,
                self.logs_folder,
                exc,
                on_started=self.send,
                echo=self.echo,
                log_sink=sink,
            )
        return run_try(
            workload,
            bundle_dir,
            self.logs_folder,
            max_result_bytes=self.settings.max_result_bytes,
            on_started=self.send,
            echo=self.echo,
            interrupt=self._interrupt(),
            before_callbacks=before_callbacks,
            log_sink=sink,
        )

    def _run_callback(self, workload: CallbackWorkload) -> None:
        try:
            bundle_dir = self._bundle_dir(workload.run.bundle_version)
            run_callback_workload(
                workload,
                bundle_dir,
                self.settings.logs_folder,
                self.echo,
                interrupt=self._interrupt(),
            )
        except Exception:  # logged by the executor's process output; the run is over anyway
            traceback.print_exc()

    def _interrupt(self) -> Interrupt:
        return Interrupt(self.conn.fileno(), self._check_message)

    def _check_message(self) -> StopTry | None:
        """Called while a child runs (a try or a callback) and the connection is readable."""
        try:
            message = self._receive()
        except (EOFError, OSError):  # OSError: killed with our messages unread (ECONNRESET)
            self.stopping = True
            return StopTry("the executor went away", at_once=True)
        if (
            isinstance(message, Cancel)
            and self.running is not None
            and message.try_id == self.running
        ):
            return StopTry("cancelled")
        if isinstance(message, Kill):
            self.stopping = True
            return StopTry("killed: the executor is stopping", at_once=True)
        if isinstance(message, Stop):
            self.stopping = True
        elif isinstance(message, TryWorkload | CallbackWorkload):
            self.pending.append(message)
        return None

    def _bundle_dir(self, version: str) -> Path:
        path = self.bundle_dirs.get(version)
        if path is None:
            path = BundleCache(self.settings.bundle_cache).path(
                version, lambda: self._fetch_archive(version)
            )
            self.bundle_dirs[version] = path
        return path

    def _fetch_archive(self, version: str) -> bytes:
        if not can_reach_database(self.settings):
            raise BundleError(
                f"bundle {version[:12]} is not in the cache {self.settings.bundle_cache}, and "
                "a worker process holds no database password to fetch it (so tries cannot "
                "find one); the executor fetches bundles before it sends a try: see its log"
            )
        return fetch_archive(self.settings, version)
