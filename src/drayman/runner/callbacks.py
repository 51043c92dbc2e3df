"""Callbacks: a task's `on_success`/`on_retry`/`on_failure` after its try, a DAG's after its run.

Each runs in a forked child of its own (`drayman.runner.process`), with a time limit
(`CALLBACK_TIMEOUT_S`): a callback that hangs or fails is logged in the try's (or the run's
callback) log and never changes an outcome. With `run_as_user` the DAG file is imported in
the callback's child, as that user, not in the warm process.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from drayman.authoring.tasks import Task
from drayman.runner.context import context_for, run_context
from drayman.runner.host import hostname
from drayman.runner.loader import load_dag, load_task
from drayman.runner.process import fork, switches_user
from drayman.runner.results import one_line
from drayman.runner.supervise import Interrupt, describe_exit, supervise
from drayman.runner.trylog import TryLog, default_callback_log_path
from drayman.workloads import CallbackWorkload, TryOutcome, TryWorkload

CALLBACK_TIMEOUT_S = 60.0
TASK_CALLBACKS = ("on_success", "on_retry", "on_failure")


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
    path = workload.log_path or default_callback_log_path(workload)
    log = TryLog(logs_folder / path, echo)
    try:
        log.line(
            f"DAG {run.dag_id} {workload.callback} callback (run {run.run_id}, "
            f"bundle {run.bundle_version[:8]}) on {hostname()}"
        )
        if switches_user():  # the DAG file is imported in the callback's child, as its user
            run_callback(
                log,
                workload.callback,
                lambda: _dag_callback(workload, bundle_dir),
                interrupt,
            )
            return
        try:
            dag = load_dag(bundle_dir, workload.fileloc, run.dag_id)
        except Exception as exc:
            log_exception(log, exc)
            log.line(f"{workload.callback} callback not run: {one_line(exc)}")
            return
        if not getattr(dag, workload.callback, ()):
            log.line(f"DAG {run.dag_id} has no {workload.callback} callback (any more)")
            return
        ctx = run_context(run, task_id="", map_index=-1, try_number=0, max_tries=0)
        run_callback(
            log,
            workload.callback,
            lambda: dag.run_callback(workload.callback, ctx, workload.reason),
        )
    finally:
        log.close()


def _dag_callback(workload: CallbackWorkload, bundle_dir: Path) -> None:
    """A DAG-level callback in its child: import the DAG file, then call the callback."""
    run = workload.run
    dag = load_dag(bundle_dir, workload.fileloc, run.dag_id)
    if not getattr(dag, workload.callback, ()):
        print(f"[drayman] DAG {run.dag_id} has no {workload.callback} callback (any more)")
        return
    ctx = run_context(run, task_id="", map_index=-1, try_number=0, max_tries=0)
    dag.run_callback(workload.callback, ctx, workload.reason)


def task_callbacks(
    workload: TryWorkload,
    task: Task | None,
    bundle_dir: Path,
    callbacks: list[str],
    log: TryLog,
    outcome: TryOutcome,
    interrupt: Interrupt | None,
    before: Callable[[TryOutcome], None] | None,
) -> None:
    """Run the task's callback for `outcome`, if it has one (`callbacks`); `task` None: its
    child imports the DAG file again."""
    if outcome.succeeded:
        name = "on_success"
    elif workload.try_number < workload.max_tries:
        name = "on_retry"
    else:
        name = "on_failure"
    if name not in callbacks:
        return  # the common case: no fork at all
    if before is not None:
        before(outcome)
    error = outcome.error

    def call() -> None:
        (task or load_try_task(workload, bundle_dir)).run_callback(
            name, context_for(workload), error
        )

    run_callback(log, name, call, interrupt)


def run_callback(
    log: TryLog, name: str, call: Callable[[], None], interrupt: Interrupt | None = None
) -> None:
    """Run a callback in its own child, with a time limit; a failure is only logged."""

    def body(_result_fd: int) -> int:
        call()
        return 0

    log.line(f"running {name} callback")
    child = fork(body)
    ended = supervise(child, log, CALLBACK_TIMEOUT_S, interrupt)
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


def load_try_task(workload: TryWorkload, bundle_dir: Path) -> Task:
    return load_task(bundle_dir, workload.fileloc, workload.run.dag_id, workload.task_id)[1]


def log_exception(log: TryLog, exc: BaseException) -> None:
    log.write("".join(traceback.format_exception(exc)).encode(errors="backslashreplace"))
