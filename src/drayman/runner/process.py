"""Fork a child of this warm process to run a function (`drayman.runner.supervise` watches it).

Why fork: starting a Python interpreter costs ~30 ms and imports cost more; the process that
runs a try already has drayman and the DAG file imported, so a fork costs ~1 ms and shares
every page it does not write. The child never returns into the caller's code: it ends with
`os._exit`.

Why `setsid`: the child leads its own process group, so a timeout or a cancel kills whatever
the task started too (a shell pipeline, a subprocess). When the child's main process ends, what
is left of its group is killed: a try leaves no stray processes in a long-lived worker.

The child's fd 1 and 2 are one pipe, copied by the caller into the try's log; a second pipe
carries one message back (see `drayman.runner.results`).
"""

from __future__ import annotations

import ctypes
import faulthandler
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, TextIO

from drayman.config import hide_secrets
from drayman.runner.isolation import RunAs, become
from drayman.runner.results import one_line

_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent) + os.sep
_CHILD_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_FD_LIMIT = 2**31 - 1  # above any fd number


@dataclass
class Child:
    pid: int
    pidfd: int | None  # None where the kernel has no pidfd_open: then we poll waitpid
    out_fd: int
    result_fd: int


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


def send(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
