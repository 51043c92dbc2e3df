"""Fork a child of this warm process to run a function, and watch it to the end.

Why fork: starting a Python interpreter costs ~30 ms and imports cost more; the process that
runs a try already has drayman and the DAG file imported, so a fork costs ~1 ms and shares
every page it does not write. The child never returns into the caller's code: it ends with
`os._exit`.

Why `setsid`: the child leads its own process group, so a timeout or a cancel kills whatever
the task started too (a shell pipeline, a subprocess). When the child's main process ends, what
is left of its group is killed: a try leaves no stray processes in a long-lived worker.

The child's fd 1 and 2 are one pipe, copied by the caller into the try's log (and to `echo`,
for `drayman dags test`), so output of subprocesses lands in the log too. A second pipe carries
one message back (see `drayman.runner.results`). The caller waits with poll() on both pipes and
a pidfd, waking also when the log's sink is due a flush: no threads, no busy polling.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import logging
import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, TextIO

from drayman.config import hide_secrets
from drayman.runner.isolation import RunAs, become
from drayman.runner.results import one_line
from drayman.runner.trylog import TryLog

KILL_GRACE_S = 5.0  # between SIGTERM and SIGKILL: time for a task to clean up
_READ_CHUNK = 65536
_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent) + os.sep
_CHILD_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_FD_LIMIT = 2**31 - 1  # above any fd number


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
class Child:
    pid: int
    pidfd: int | None  # None where the kernel has no pidfd_open: then we poll waitpid
    out_fd: int
    result_fd: int


@dataclass
class Ended:
    """What watching a child found out."""

    status: int  # as from waitpid
    message: bytes  # what the child sent on the result pipe
    timed_out: bool
    interrupted: str | None


_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: no parent-death signal
        return None
    return prctl


_PRCTL = _load_prctl()  # looked up once, in the warm process, not in every forked try


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process the moment its parent dies.

    A try runs in a session of its own (so a timeout kills its whole group), which also means
    nothing kills it when its worker is killed with SIGKILL. Were it to keep running, the
    scheduler would declare it lost and retry it, and two tries of one task would overlap.
    """
    if _PRCTL is None:
        return
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(70)


def fork(body: Callable[[int], int]) -> Child:
    parent_pid = os.getpid()
    out_r, out_w = os.pipe()
    result_r, result_w = os.pipe()
    for stream in (sys.stdout, sys.stderr):
        # Or the child would write the caller's buffered text a second time.
        if stream is not None:
            stream.flush()
    try:
        pid = os.fork()
    except OSError:  # EAGAIN, ENOMEM: the process table or memory is full
        for fd in (out_r, out_w, result_r, result_w):
            os.close(fd)
        raise
    if pid == 0:
        os.close(out_r)
        os.close(result_r)
        _child_main(body, out_w, result_w, parent_pid)
    os.close(out_w)
    os.close(result_w)
    os.set_blocking(out_r, False)
    os.set_blocking(result_r, False)
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    return Child(pid, pidfd, out_r, result_r)


def prepare_process(run_as: RunAs | None = None) -> None:
    """Set this (worker) process up once so that its forked tries need no setup of their own.

    Every page a child writes is copied (~2 µs each on a VM): creating stream objects and
    logging handlers in each child costs more than the task. After this, fd 1 and 2 carry
    line-buffered streams and the root logger, and a child only has to move its fds.
    With `run_as`, every child switches to that user once its pipes are in place.
    """
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    _setup_streams()
    _prepared.append(True)
    _run_as[:] = [run_as] if run_as is not None else []


_prepared: list[bool] = []  # per process: whether prepare_process() ran
_run_as: list[RunAs] = []  # per process: the user its children switch to, if any


def switches_user() -> bool:
    """Whether this process's children switch user: then user code must not run in it."""
    return bool(_run_as)


def _child_main(
    body: Callable[[int], int], out_fd: int, result_fd: int, parent_pid: int
) -> NoReturn:
    code = 70  # EX_SOFTWARE: the child could not even set itself up
    try:
        os.setsid()
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        os.close(out_fd)
        _close_inherited_fds(keep=(0, 1, 2, result_fd))
        hide_secrets(os.environ)
        if _run_as:
            become(_run_as[0])
        # after become(): a change of user clears the parent-death signal
        die_with_parent(parent_pid)
        if not _prepared:  # run_try called from an ordinary process: `drayman dags test`
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.close(devnull)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            _setup_streams()
        code = _run_body(body, result_fd)
    finally:
        os._exit(code)


def _close_inherited_fds(keep: tuple[int, ...]) -> None:
    """Close every fd the fork copied from the warm worker but `keep`.

    The worker's socket to the executor is among them, and the executor unpickles what
    arrives on it: left open, a task could run code in the scheduler or `drayman worker`.
    So are the try's own log file and the pipes of the worker's other children. Done first
    thing, before any user code, and before the change of user (which does not close fds).
    Python objects of the worker that wrap these fds are never closed in the child (it
    ends with `os._exit`), so a reused fd number is never closed under the task.
    """
    low = 0
    for fd in sorted(set(keep)):
        if fd > low:
            os.closerange(low, fd)
        low = max(low, fd + 1)
    # not RLIMIT_NOFILE: it may have been lowered after a higher fd was opened. CPython
    # closes a range with close_range(2), or walks /proc/self/fd: no loop over 2**31 numbers.
    os.closerange(low, _FD_LIMIT)


def _setup_streams() -> None:
    # New objects on fd 1/2: the inherited sys.stdout may be a test runner's capture file, and
    # line buffering keeps a long task's log readable while it runs.
    sys.stdout = _text_stream(1)
    sys.stderr = _text_stream(2)
    _log_to_stderr()
    # A crash in C code (SIGSEGV) then leaves the Python stack in the try's log.
    faulthandler.enable(sys.stderr)


def _text_stream(fd: int) -> TextIO:
    return open(fd, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)


def _log_to_stderr() -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_CHILD_LOG_FORMAT))
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def _run_body(body: Callable[[int], int], result_fd: int) -> int:
    try:
        code = body(result_fd)
    except SystemExit as exc:
        code = _system_exit_code(exc)
    except BaseException as exc:
        _print_traceback(exc)
        send(result_fd, b"E" + one_line(exc).encode())
        code = 1
    try:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # a closed or broken stream must not stop the exit
        pass
    return code


def _print_traceback(exc: BaseException) -> None:
    """The traceback from the first frame of user code: drayman's own frames are noise there."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb or exc.__traceback__)


def _system_exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    print(exc.code, file=sys.stderr)  # sys.exit("message") prints it, like the interpreter
    return 1


def supervise(
    child: Child, log: TryLog, timeout_s: float | None, interrupt: Interrupt | None
) -> Ended:
    """Copy the child's output to the log until it exits; enforce the timeout and cancels."""
    watch = _Watch(child, log, timeout_s, interrupt)
    try:
        watch.run()
    finally:
        # What is left of the group is the task's own strays; the zombie keeps the pgid ours.
        _kill_group(child.pid, signal.SIGKILL)
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


def _kill_group(pgid: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, number)


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


def send(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


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
