"""Run one try of one task in a forked child of this warm process, and watch it to the end.

Why fork: starting a Python interpreter costs ~30 ms and imports cost more; the process that
calls `run_try` already has drayman and the DAG file imported, so a fork costs ~1 ms and
shares every page it does not write. The child never returns into the caller's code: it
ends with `os._exit`.

Why `setsid`: the child leads its own process group, so a timeout or a cancel kills whatever
the task started too (a shell pipeline, a subprocess). When the task's main process ends,
what is left of its group is killed: a try leaves no stray processes in a long-lived worker.

The child's fd 1 and 2 are one pipe, copied by the caller into the try's log (and to `echo`,
for `drayman dags test`), so output of subprocesses lands in the log too. A Python task's
return value travels on a second pipe as one message: b"R" + JSON, or b"E" + a one-line error.
The caller waits with poll() on both pipes and a pidfd: no threads, no busy polling.
"""

from __future__ import annotations

import codecs
import contextlib
import faulthandler
import functools
import json
import logging
import os
import select
import shlex
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TextIO

from drayman.authoring.context import Context, parse_aware
from drayman.authoring.tasks import PythonTask, ShellTask, Task
from drayman.exceptions import DraymanError, ResultTooLargeError
from drayman.runner.loader import load_dag, load_task
from drayman.workloads import (
    CallbackWorkload,
    RunContextData,
    TryOutcome,
    TryStarted,
    TryWorkload,
    log_relpath,
)

KILL_GRACE_S = 5.0  # between SIGTERM and SIGKILL: time for a task to clean up
CALLBACK_TIMEOUT_S = 60.0
_READ_CHUNK = 65536
_ERROR_CHARS = 1000  # a one-line error longer than this is cut: the log has the full text
# Built once: json.dumps with options builds a new encoder per call, in every forked child.
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))
_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent) + os.sep
_CHILD_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class ResultNotJSONError(DraymanError, TypeError):
    """A task returned a value that JSON cannot carry to its downstream tasks."""


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


# ------------------------------------------------------------------------- results (pure)


def encode_result(task_id: str, value: Any, max_bytes: int) -> str:
    """`value` as compact JSON, or an error that says what to do instead."""
    try:
        text = _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise ResultNotJSONError(
            f"task {task_id!r} returned a value that is not JSON ({exc}); return only str, "
            "int, float, bool, None, list or dict, and write other data to storage"
        ) from None
    size = len(text)  # the encoder escapes non-ASCII: one character is one byte
    if size > max_bytes:
        raise ResultTooLargeError(
            f"task {task_id!r} returned {format_bytes(size)}; results are capped at "
            f"{format_bytes(max_bytes)} (DRAYMAN_MAX_RESULT_BYTES): "
            "write big data to storage and return its path"
        )
    return text


def format_bytes(size: int) -> str:
    """A size as people read it: 812 bytes, 64 KB, 1.2 MB."""
    if size < 1024:
        return f"{size} bytes"
    value, unit = (size / 1024**2, "MB") if size >= 1024**2 else (size / 1024, "KB")
    text = f"{value:.1f}".removesuffix(".0")
    return f"{text} {unit}"


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


def context_for(workload: TryWorkload) -> Context:
    """The Context of one try: run data from the workload, times aware in the DAG's zone."""
    return _context(
        workload.run, workload.task_id, workload.map_index, workload.try_number, workload.max_tries
    )


def _context(
    run: RunContextData, task_id: str, map_index: int, try_number: int, max_tries: int
) -> Context:
    return Context(
        dag_id=run.dag_id,
        run_id=run.run_id,
        task_id=task_id,
        map_index=map_index,
        try_number=try_number,
        max_tries=max_tries,
        run_type=run.run_type,
        logical_date=parse_aware(run.logical_date, run.timezone),
        data_interval_start=parse_aware(run.data_interval_start, run.timezone),
        data_interval_end=parse_aware(run.data_interval_end, run.timezone),
        timezone=run.timezone,
        bundle_version=run.bundle_version,
        params=dict(run.params),
        conf=dict(run.conf),
    )


# ------------------------------------------------------------------------------ the log


class TryLog:
    """One try's log file, appended to; mirrored to `echo` when given."""

    def __init__(self, path: Path, echo: TextIO | None = None) -> None:
        self.path = path
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        try:
            self._fd = os.open(path, flags, 0o644)
        except FileNotFoundError:  # a new task's folder: creating it only then saves syscalls
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, flags, 0o644)
        self._echo = echo
        # Output arrives in arbitrary chunks: a UTF-8 character may straddle two of them.
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace") if echo else None

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        if self._echo is not None and self._decoder is not None:
            self._echo.write(self._decoder.decode(data))
            self._echo.flush()

    def line(self, text: str) -> None:
        """One of drayman's own lines, set apart from the task's output by its prefix."""
        self.write(f"[drayman] {text}\n".encode())

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


# ----------------------------------------------------------------------------- public API


def run_try(
    workload: TryWorkload,
    bundle_dir: Path,
    logs_folder: Path,
    *,
    max_result_bytes: int,
    on_started: Callable[[TryStarted], None],
    echo: TextIO | None = None,
    interrupt: Interrupt | None = None,
    before_callbacks: Callable[[TryOutcome], None] | None = None,
) -> TryOutcome:
    """Run one try in a forked child; return how it ended once its callbacks have run.

    `before_callbacks` (if given) hears the outcome just before the task's callbacks run, when
    some will: a worker reports it then, rather than after a notifier that may take a minute.
    """
    log = TryLog(logs_folder / try_log_path(workload), echo)
    try:
        return _run_try(
            workload, bundle_dir, log, max_result_bytes, on_started, interrupt, before_callbacks
        )
    finally:
        log.close()


def run_callback_workload(
    workload: CallbackWorkload,
    bundle_dir: Path,
    logs_folder: Path,
    echo: TextIO | None = None,
    *,
    interrupt: Interrupt | None = None,
) -> None:
    """Run a DAG-level callback in a forked child; its failure is logged, never raised."""
    run = workload.run
    path = workload.log_path or _default_callback_log_path(workload)
    log = TryLog(logs_folder / path, echo)
    try:
        log.line(
            f"DAG {run.dag_id} {workload.callback} callback (run {run.run_id}, "
            f"bundle {run.bundle_version[:8]}) on {hostname()}"
        )
        try:
            dag = load_dag(bundle_dir, workload.fileloc, run.dag_id)
        except Exception as exc:
            _log_exception(log, exc)
            log.line(f"{workload.callback} callback not run: {_one_line(exc)}")
            return
        if not getattr(dag, workload.callback, ()):
            log.line(f"DAG {run.dag_id} has no {workload.callback} callback (any more)")
            return
        ctx = _context(run, task_id="", map_index=-1, try_number=0, max_tries=0)
        _run_callback(
            log,
            workload.callback,
            lambda: dag.run_callback(workload.callback, ctx, workload.reason),
        )
    finally:
        log.close()


def fail_try(
    workload: TryWorkload,
    logs_folder: Path,
    error: BaseException,
    *,
    on_started: Callable[[TryStarted], None],
    echo: TextIO | None = None,
) -> TryOutcome:
    """A try that failed before it could start (its bundle could not be fetched): logged."""
    log = TryLog(logs_folder / try_log_path(workload), echo)
    try:
        return _fail_in_place(workload, log, error, on_started)
    finally:
        log.close()


@functools.cache
def hostname() -> str:
    return socket.gethostname()


# ------------------------------------------------------------------------ one try, in order


def _run_try(
    workload: TryWorkload,
    bundle_dir: Path,
    log: TryLog,
    max_result_bytes: int,
    on_started: Callable[[TryStarted], None],
    interrupt: Interrupt | None,
    before_callbacks: Callable[[TryOutcome], None] | None,
) -> TryOutcome:
    started_at = datetime.now(UTC)
    clock = time.monotonic()
    try:
        _, task = load_task(bundle_dir, workload.fileloc, workload.run.dag_id, workload.task_id)
    except Exception as exc:
        return _fail_in_place(workload, log, exc, on_started)
    body = _task_body(workload, task, bundle_dir, max_result_bytes)
    child = _fork(body)
    on_started(TryStarted(workload.try_id, hostname(), child.pid, started_at))
    log.line(_start_line(workload, child.pid))
    ended = _supervise(child, log, workload.execution_timeout_s, interrupt)
    outcome = _outcome(workload, ended, started_at, child.pid)
    elapsed = time.monotonic() - clock
    if outcome.succeeded:
        log.line(f"success in {elapsed:.2f} s")
    else:
        log.line(f"failed: {outcome.error} (after {elapsed:.2f} s)")
    _task_callbacks(workload, task, log, outcome, interrupt, before_callbacks)
    return outcome


def _fail_in_place(
    workload: TryWorkload,
    log: TryLog,
    error: BaseException,
    on_started: Callable[[TryStarted], None],
) -> TryOutcome:
    # No child to start: the outcome is decided here, in the worker, and said in the log.
    started_at = datetime.now(UTC)
    on_started(TryStarted(workload.try_id, hostname(), os.getpid(), started_at))
    log.line(_start_line(workload, os.getpid()))
    _log_exception(log, error)
    outcome = _failed(workload, started_at, os.getpid(), _one_line(error))
    log.line(f"failed: {outcome.error}")
    return outcome


def _start_line(workload: TryWorkload, pid: int) -> str:
    run = workload.run
    task = (
        workload.task_id if workload.map_index < 0 else f"{workload.task_id}[{workload.map_index}]"
    )
    return (
        f"try {workload.try_number} of {workload.max_tries} of {run.dag_id}.{task} "
        f"(run {run.run_id}, bundle {run.bundle_version[:8]}) on {hostname()} pid {pid}"
    )


def _failed(workload: TryWorkload, started_at: datetime, pid: int, error: str) -> TryOutcome:
    return TryOutcome(
        try_id=workload.try_id,
        succeeded=False,
        started_at=started_at,
        ended_at=datetime.now(UTC),
        hostname=hostname(),
        pid=pid,
        error=error,
    )


@dataclass
class _Ended:
    """What watching a child found out."""

    status: int  # as from waitpid
    message: bytes  # what the child sent on the result pipe
    timed_out: bool
    interrupted: str | None


def _outcome(workload: TryWorkload, ended: _Ended, started_at: datetime, pid: int) -> TryOutcome:
    exit_code, signal_number, exit_text = describe_exit(ended.status)
    result_json = None
    error = None
    if ended.message[:1] == b"R":
        result_json = ended.message[1:].decode()
    elif ended.message[:1] == b"E":
        error = ended.message[1:].decode(errors="replace")
    succeeded = exit_code == 0 and not ended.timed_out and not ended.interrupted
    if ended.timed_out:
        error = f"execution_timeout of {workload.execution_timeout_s:g} s exceeded"
    elif ended.interrupted:
        error = f"{ended.interrupted} ({exit_text})"
    elif signal_number is not None or (not succeeded and error is None):
        error = exit_text
    return TryOutcome(
        try_id=workload.try_id,
        succeeded=succeeded,
        started_at=started_at,
        ended_at=datetime.now(UTC),
        hostname=hostname(),
        pid=pid,
        exit_code=exit_code,
        signal=signal_number,
        error=None if succeeded else error,
        result_json=result_json if succeeded else None,
        timed_out=ended.timed_out,
    )


# ----------------------------------------------------------------- what runs in the child


def _task_body(
    workload: TryWorkload, task: Task, bundle_dir: Path, max_result_bytes: int
) -> Callable[[int], int]:
    """The function the child runs; returns the child's exit code (a shell task never does)."""

    def body(result_fd: int) -> int:
        ctx = context_for(workload)
        if isinstance(task, ShellTask):
            _exec_shell(task, ctx, bundle_dir)
        if not isinstance(task, PythonTask):
            raise TypeError(f"task {task.task_id!r}: cannot run a {type(task).__name__}")
        value = task.call(ctx, workload.upstream_results, workload.map_index)
        try:
            text = encode_result(workload.task_id, value, max_result_bytes)
        except (ResultNotJSONError, ResultTooLargeError) as exc:
            print(f"[drayman] {exc}", file=sys.stderr)
            _send(result_fd, b"E" + str(exc).encode())
            return 1
        _send(result_fd, b"R" + text.encode())
        return 0

    return body


def _exec_shell(task: ShellTask, ctx: Context, bundle_dir: Path) -> NoReturn:
    """Replace the child by bash, so the try's exit code is the command's."""
    command, env, cwd = task.render(ctx)
    # Relative to the bundle, so `bash scripts/load.sh` finds the bundle's own scripts.
    os.chdir(bundle_dir / cwd if cwd else bundle_dir)
    environment = {**os.environ, **_context_env(ctx), **env}
    print(f"[drayman] bash -c {shlex.quote(command)}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    # Python ignores SIGPIPE and an ignored signal stays ignored across exec: `yes | head`
    # would never end. subprocess resets these too (restore_signals).
    for number in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_DFL)
    os.execvpe("bash", ["bash", "-c", command], environment)


def _context_env(ctx: Context) -> dict[str, str]:
    return {
        "DRAYMAN_DAG_ID": ctx.dag_id,
        "DRAYMAN_TASK_ID": ctx.task_id,
        "DRAYMAN_RUN_ID": ctx.run_id,
        "DRAYMAN_TRY_NUMBER": str(ctx.try_number),
        "DRAYMAN_MAP_INDEX": str(ctx.map_index),
        "DRAYMAN_LOGICAL_DATE": ctx.ts,
    }


def _send(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# ----------------------------------------------------------------------- fork and supervise


@dataclass
class _Child:
    pid: int
    pidfd: int | None  # None where the kernel has no pidfd_open: then we poll waitpid
    out_fd: int
    result_fd: int


def _fork(body: Callable[[int], int]) -> _Child:
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
        _child_main(body, out_w, result_w)
    os.close(out_w)
    os.close(result_w)
    os.set_blocking(out_r, False)
    os.set_blocking(result_r, False)
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    return _Child(pid, pidfd, out_r, result_r)


def prepare_process() -> None:
    """Set this (worker) process up once so that its forked tries need no setup of their own.

    Every page a child writes is copied (~2 µs each on a VM): creating stream objects and
    logging handlers in each child costs more than the task. After this, fd 1 and 2 carry
    line-buffered streams and the root logger, and a child only has to move its fds.
    """
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    _setup_streams()
    _prepared.append(True)


_prepared: list[bool] = []  # per process: whether prepare_process() ran


def _child_main(body: Callable[[int], int], out_fd: int, result_fd: int) -> NoReturn:
    code = 70  # EX_SOFTWARE: the child could not even set itself up
    try:
        os.setsid()
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        os.close(out_fd)
        if not _prepared:  # run_try called from an ordinary process: `drayman dags test`
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.close(devnull)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            _setup_streams()
        code = _run_body(body, result_fd)
    finally:
        os._exit(code)


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
        _send(result_fd, b"E" + _one_line(exc).encode())
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


def _supervise(
    child: _Child, log: TryLog, timeout_s: float | None, interrupt: Interrupt | None
) -> _Ended:
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
    return _Ended(status, bytes(watch.message), watch.timed_out, watch.interrupted)


class _Watch:
    """The poll loop of `_supervise`, with its state in one place."""

    def __init__(
        self, child: _Child, log: TryLog, timeout_s: float | None, interrupt: Interrupt | None
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

    def _terminate(self) -> None:
        _signal_try(self.child.pid, signal.SIGTERM)
        if self.kill_at is None:
            self.kill_at = time.monotonic() + KILL_GRACE_S

    def _wait_ms(self) -> int:
        moments = [t for t in (self.deadline, self.kill_at) if t is not None]
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


# ------------------------------------------------------------------------------- callbacks


def _task_callbacks(
    workload: TryWorkload,
    task: Task,
    log: TryLog,
    outcome: TryOutcome,
    interrupt: Interrupt | None,
    before: Callable[[TryOutcome], None] | None,
) -> None:
    if outcome.succeeded:
        name = "on_success"
    elif workload.try_number < workload.max_tries:
        name = "on_retry"
    else:
        name = "on_failure"
    if not getattr(task.options, name):
        return  # the common case: no fork at all
    if before is not None:
        before(outcome)
    error = outcome.error

    def call() -> None:
        task.run_callback(name, context_for(workload), error)

    _run_callback(log, name, call, interrupt)


def _run_callback(
    log: TryLog, name: str, call: Callable[[], None], interrupt: Interrupt | None = None
) -> None:
    """Run a callback in its own child, with a time limit; a failure is only logged."""

    def body(_result_fd: int) -> int:
        call()
        return 0

    log.line(f"running {name} callback")
    child = _fork(body)
    ended = _supervise(child, log, CALLBACK_TIMEOUT_S, interrupt)
    _, _, exit_text = describe_exit(ended.status)
    if ended.interrupted:
        log.line(f"{name} callback stopped: {ended.interrupted}")
    elif ended.timed_out:
        log.line(f"{name} callback failed: it took longer than {CALLBACK_TIMEOUT_S:g} s")
    elif ended.status != 0:
        detail = ended.message[1:].decode(errors="replace") if ended.message else exit_text
        log.line(f"{name} callback failed: {detail}")
    else:
        log.line(f"{name} callback done")


# ---------------------------------------------------------------------------------- helpers


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    if isinstance(exc, DraymanError) and text:
        first = text[0]  # drayman's own messages are already written for people
    return first if len(first) <= _ERROR_CHARS else first[: _ERROR_CHARS - 3] + "..."


def _log_exception(log: TryLog, exc: BaseException) -> None:
    log.write("".join(traceback.format_exception(exc)).encode(errors="backslashreplace"))


def try_log_path(workload: TryWorkload) -> str:
    """Where a try's log goes, relative to the logs folder."""
    return workload.log_path or _default_log_path(workload)


def _default_log_path(workload: TryWorkload) -> str:
    run = workload.run
    return log_relpath(
        run.dag_id, run.run_id, workload.task_id, workload.map_index, workload.try_number
    )


def _default_callback_log_path(workload: CallbackWorkload) -> str:
    run_folder = Path(log_relpath(workload.run.dag_id, workload.run.run_id, "x", -1, 1)).parent
    return str(run_folder.parent / f"dag_{workload.callback}.log")
