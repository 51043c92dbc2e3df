"""Run one try of one task and say how it ended (its callbacks: `drayman.runner.callbacks`).

A try loads its task from the bundle, runs it in a forked child (`drayman.runner.process`),
copies the child's output into the try's log (`drayman.runner.trylog`), and turns how the child
ended and what it sent back (`drayman.runner.results`) into a `TryOutcome`. The task's
`on_success`, `on_retry` or `on_failure` callback then runs in a child of its own, with a time
limit: a callback that hangs or fails is logged and never changes the outcome. A Python task
runs in the child as a function call; a shell task replaces the child by bash, so the try's
exit code is the command's.

With `run_as_user`, the DAG file is not imported here, in the warm worker that runs as
drayman's user, but in each child once it has switched user: its top level is the author's
code, like the task. The try's child then tells this process which callbacks the task has
(a "C" line on the result pipe before anything else), and each callback's child imports the
file again. Without it, the file is imported here once and every try is only a fork.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn, TextIO

from drayman.authoring.context import Context
from drayman.authoring.tasks import PythonTask, ShellTask, Task
from drayman.exceptions import ParamsError, ResultTooLargeError
from drayman.runner.callbacks import (
    TASK_CALLBACKS,
    load_try_task,
    log_exception,
    task_callbacks,
)
from drayman.runner.context import context_for
from drayman.runner.host import hostname
from drayman.runner.loader import load_task
from drayman.runner.process import fork, send, switches_user
from drayman.runner.results import ResultNotJSONError, encode_result, one_line
from drayman.runner.supervise import Ended, Interrupt, describe_exit, supervise
from drayman.runner.trylog import LogSink, TryLog, try_log_path
from drayman.workloads import (
    TryOutcome,
    TryStarted,
    TryWorkload,
)

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
    log_sink: LogSink | None = None,
) -> TryOutcome:
    """Run one try in a forked child; return how it ended once its callbacks have run.

    `before_callbacks` (if given) hears the outcome just before the task's callbacks run, when
    some will: a worker reports it then, rather than after a notifier that may take a minute.
    `log_sink` (if given) gets the log too, and is closed (its last flush) before this returns.
    """
    log = TryLog(logs_folder / try_log_path(workload), echo, log_sink)
    try:
        return _run_try(
            workload, bundle_dir, log, max_result_bytes, on_started, interrupt, before_callbacks
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
    log_sink: LogSink | None = None,
) -> TryOutcome:
    """A try that failed before it could start (its bundle could not be fetched): logged."""
    log = TryLog(logs_folder / try_log_path(workload), echo, log_sink)
    try:
        return _fail_in_place(workload, log, error, on_started)
    finally:
        log.close()


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
    task: Task | None = None  # None: imported in the child (see the module docstring)
    if not switches_user():
        try:
            _, task = load_task(bundle_dir, workload.fileloc, workload.run.dag_id, workload.task_id)
        except Exception as exc:
            return _fail_in_place(workload, log, exc, on_started)
    body = _task_body(workload, task, bundle_dir, max_result_bytes)
    child = fork(body)
    on_started(TryStarted(workload.try_id, hostname(), child.pid, started_at))
    log.line(_start_line(workload, child.pid))
    ended = supervise(child, log, workload.execution_timeout_s, interrupt)
    if task is None:
        callbacks, ended.message = _callbacks_line(ended.message)
    else:
        callbacks = _callback_names(task)
    outcome = _outcome(workload, ended, started_at, child.pid)
    elapsed = time.monotonic() - clock
    if outcome.succeeded:
        log.line(f"success in {elapsed:.2f} s")
    else:
        log.line(f"failed: {outcome.error} (after {elapsed:.2f} s)")
    task_callbacks(workload, task, bundle_dir, callbacks, log, outcome, interrupt, before_callbacks)
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
    log_exception(log, error)
    outcome = _failed(workload, started_at, os.getpid(), one_line(error))
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


def _outcome(workload: TryWorkload, ended: Ended, started_at: datetime, pid: int) -> TryOutcome:
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
    workload: TryWorkload, loaded: Task | None, bundle_dir: Path, max_result_bytes: int
) -> Callable[[int], int]:
    """The function the child runs; returns the child's exit code (a shell task never does).

    `loaded` None: the child imports the DAG file itself (it runs as `run_as_user` by now)
    and first says which callbacks the task has, as a "C" line on the result pipe.
    """

    def body(result_fd: int) -> int:
        task = loaded
        if task is None:
            task = load_try_task(workload, bundle_dir)
            send(result_fd, b"C" + json.dumps(_callback_names(task)).encode() + b"\n")
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
            send(result_fd, b"E" + str(exc).encode())
            return 1
        send(result_fd, b"R" + text.encode())
        return 0

    return body


def _callback_names(task: Task) -> list[str]:
    return [name for name in TASK_CALLBACKS if getattr(task.options, name)]


def _callbacks_line(message: bytes) -> tuple[list[str], bytes]:
    """The callbacks a child that imported its task named, and the rest of its message."""
    if message[:1] != b"C":
        return [], message  # it failed before it could say: no callback runs, as in place
    line, _, rest = message.partition(b"\n")
    try:
        names = json.loads(line[1:])
    except ValueError:
        return [], rest
    return [name for name in TASK_CALLBACKS if name in names], rest


def _exec_shell(task: ShellTask, ctx: Context, bundle_dir: Path) -> NoReturn:
    """Replace the child by bash, so the try's exit code is the command's."""
    command, env, cwd = task.render(ctx)
    # Relative to the bundle, so `bash scripts/load.sh` finds the bundle's own scripts.
    os.chdir(bundle_dir / cwd if cwd else bundle_dir)
    environment = {**os.environ, **_context_env(ctx), **env}
    print(f"[drayman] {command.display()}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    # Python ignores SIGPIPE and an ignored signal stays ignored across exec: `yes | head`
    # would never end. subprocess resets these too (restore_signals).
    for number in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_DFL)
    argv = command.argv()
    try:
        os.execvpe(argv[0], argv, environment)
    except OSError as exc:
        if exc.errno != errno.E2BIG:
            raise
        size = sum(len(word.encode(errors="surrogateescape")) for word in argv)
        raise ParamsError(
            f"command of task {task.task_id!r} ({size} bytes with its arguments) and its env "
            "are over the operating system's limit for a program's arguments: pass big values "
            "in a file or on stdin, not in conf"
        ) from exc


def _context_env(ctx: Context) -> dict[str, str]:
    return {
        "DRAYMAN_DAG_ID": ctx.dag_id,
        "DRAYMAN_TASK_ID": ctx.task_id,
        "DRAYMAN_RUN_ID": ctx.run_id,
        "DRAYMAN_TRY_NUMBER": str(ctx.try_number),
        "DRAYMAN_MAP_INDEX": str(ctx.map_index),
        "DRAYMAN_LOGICAL_DATE": ctx.ts,
    }
