"""The thread that waits on every warm process at once, for the pool (`drayman.runner.pool`).

It waits on each warm process's connection and process sentinel and hands what it reads to
the pool's owner thread through `inbox`, waking that thread through a pipe (`wakeup_fd`).
It never touches the pool's own state: which process runs what belongs to the owner thread.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import queue
import select
import threading
import time
from multiprocessing.connection import Connection

from drayman.runner.unpickler import RefusedMessage, decode
from drayman.workloads import LogChunks, TryStarted

log = logging.getLogger("drayman.executors.local")  # its name before issue 11, kept for log filters


def _is_progress(message: object) -> bool:
    """A start or a log chunk: news that can wait a few ms to be batched with more."""
    return isinstance(message, TryStarted | LogChunks)


DIED = object()  # in the inbox: the worker process has exited
STARTED_WAKE_DELAY_S = 0.01  # see Reader._wake_for
MAX_REFUSALS_LOGGED = 10  # see Reader._refused


class _News(enum.IntEnum):
    """What a batch read from the workers holds, by how soon the scheduler must hear it."""

    NONE = 0
    STARTED = 1  # only progress: tries that started, log chunks
    URGENT = 2  # an outcome, a free worker or a dead one


class Reader:
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
        self._thread = threading.Thread(target=self._run, name="drayman-pool-reader", daemon=True)
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
        except BaseException as exc:  # surfaced by the pool owner's next call, not lost here
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
                self.inbox.put((key, DIED))
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
