"""Watch a forked child (`drayman.runner.process.fork`) to its end: its log, its time limit,
its cancel.

The child's fd 1 and 2 are one pipe, copied here into the try's log (and to `echo`, for
`drayman dags test`), so output of subprocesses lands in the log too. A second pipe carries
one message back (see `drayman.runner.results`). This waits with poll() on both pipes and a
pidfd, waking also when the log's sink is due a flush: no threads, no busy polling. When the
child's main process ends, what is left of its process group is killed: a try leaves no
stray processes in a long-lived worker.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from drayman.runner.process import Child
from drayman.runner.trylog import TryLog

KILL_GRACE_S = 5.0  # between SIGTERM and SIGKILL: time for a task to clean up
_READ_CHUNK = 65536


@dataclass(frozen=True)
class StopTry:
    """Why a running try must stop; `at_once` skips the SIGTERM grace (executor shutdown)."""

    reason: str
    at_once: bool = False


@dataclass(frozen=True)
class Interrupt:
    """Something else to watch while a try runs (the worker's connection, for cancels).

    When `fd` is readable, `check()` reads from it and says whether the try must stop.
    """

    fd: int
    check: Callable[[], StopTry | None]


@dataclass
class Ended:
    """What watching a child found out."""

    status: int  # as from waitpid
    message: bytes  # what the child sent on the result pipe
    timed_out: bool
    interrupted: str | None


def supervise(
    child: Child, log: TryLog, timeout_s: float | None, interrupt: Interrupt | None
) -> Ended:
    """Copy the child's output to the log until it exits; enforce the timeout and cancels."""
    watch = _Watch(child, log, timeout_s, interrupt)
    try:
        watch.run()
    finally:
        # What is left of the group is the task's own strays; the zombie keeps the pgid ours.
        # When the watch failed (its owner vanished) before the child reached setsid(), the
        # child itself is what is left: waitpid() would wait out the whole task.
        _signal_try(child.pid, signal.SIGKILL)
        _, status = os.waitpid(child.pid, 0)
        watch.drain()
        for fd in (child.out_fd, child.result_fd, child.pidfd):
            if fd is not None:
                os.close(fd)
    return Ended(status, bytes(watch.message), watch.timed_out, watch.interrupted)


class _Watch:
    """The poll loop of `supervise`, with its state in one place."""

    def __init__(
        self, child: Child, log: TryLog, timeout_s: float | None, interrupt: Interrupt | None
    ) -> None:
        self.child = child
        self.log = log
        self.interrupt = interrupt
        self.message = bytearray()
        self.timed_out = False
        self.interrupted: str | None = None
        self.deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self.kill_at: float | None = None
        self.poller = select.poll()
        self.open = {child.out_fd, child.result_fd}
        for fd in self.open:
            self.poller.register(fd, select.POLLIN)
        if child.pidfd is not None:
            self.poller.register(child.pidfd, select.POLLIN)
        if interrupt is not None:
            self.poller.register(interrupt.fd, select.POLLIN)

    def run(self) -> None:
        exited = False
        while not exited:
            for fd, _ in self.poller.poll(self._wait_ms()):
                if fd in self.open:
                    self._read(fd)
                elif fd == self.child.pidfd:
                    exited = True
                elif self.interrupt is not None and fd == self.interrupt.fd:
                    self._check_interrupt(self.interrupt)
            self._check_clock()
            self._flush_log()
            if self.child.pidfd is None:
                exited = _exited_without_reaping(self.child.pid)

    def drain(self) -> None:
        """Read what the child wrote before it ended (never waiting for strays' EOF)."""
        for fd in list(self.open):
            while fd in self.open and self._read(fd):
                pass

    def _read(self, fd: int) -> bool:
        try:
            data = os.read(fd, _READ_CHUNK)
        except BlockingIOError:
            return False
        if not data:
            self.open.discard(fd)
            self.poller.unregister(fd)
            return False
        if fd == self.child.out_fd:
            self.log.write(data)
        else:
            self.message += data
        return True

    def _check_interrupt(self, interrupt: Interrupt) -> None:
        stop = interrupt.check()
        if stop is None or self.interrupted is not None:
            return
        self.interrupted = stop.reason
        self.poller.unregister(interrupt.fd)  # it may stay readable (EOF) from now on
        if stop.at_once:
            _signal_try(self.child.pid, signal.SIGKILL)
        else:
            self._terminate()

    def _check_clock(self) -> None:
        now = time.monotonic()
        if self.deadline is not None and now >= self.deadline:
            self.deadline = None
            self.timed_out = True
            self._terminate()
        if self.kill_at is not None and now >= self.kill_at:
            self.kill_at = None
            _signal_try(self.child.pid, signal.SIGKILL)

    def _flush_log(self) -> None:
        due = self.log.flush_due()
        if due is not None and time.monotonic() >= due:
            self.log.flush()

    def _terminate(self) -> None:
        _signal_try(self.child.pid, signal.SIGTERM)
        if self.kill_at is None:
            self.kill_at = time.monotonic() + KILL_GRACE_S

    def _wait_ms(self) -> int:
        moments = [t for t in (self.deadline, self.kill_at, self.log.flush_due()) if t is not None]
        if self.child.pidfd is None:
            moments.append(time.monotonic() + 0.01)
        if not moments:
            return -1
        return max(0, int((min(moments) - time.monotonic()) * 1000) + 1)


def _exited_without_reaping(pid: int) -> bool:
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _signal_try(pid: int, number: int) -> None:
    """Signal the try's whole process group, even if the child has not called setsid yet."""
    try:
        os.killpg(pid, number)
    except ProcessLookupError:
        # No group yet: the child has not reached setsid(), so it has started nothing either.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, number)
    except PermissionError:
        pass


def describe_exit(status: int) -> tuple[int | None, int | None, str]:
    """(exit code, signal, one-line description) of a `waitpid` status."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        return None, number, f"killed by signal {number} ({signal_name(number)})"
    code = os.waitstatus_to_exitcode(status)
    return code, None, f"exited with code {code}"


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
