"""One try, end to end, in real forked processes: results, failures, signals, timeouts, logs."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drayman.runner.callbacks import run_callback_workload
from drayman.runner.execute import run_try
from drayman.runner.loader import unload_all
from drayman.runner.supervise import Interrupt, StopTry
from drayman.workloads import (
    CallbackWorkload,
    RunContextData,
    TryOutcome,
    TryStarted,
    TryWorkload,
    log_relpath,
)

DAG_FILE = """
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time

from drayman import DAG, Shell, task

import helpers

def note(name):
    def callback(ctx, detail):
        print(f"callback {name} of {ctx.task_id} try {ctx.try_number}: {detail}")
    return callback

def broken_callback(ctx):
    raise RuntimeError("the notifier is down")

with DAG("demo", timezone="Europe/Paris", on_success=note("dag_on_success")):

    @task
    def add(x, y):
        print("adding", x, "and", y)
        logging.getLogger("demo").info("via logging")
        return {"sum": x + y, "helper": helpers.NAME}

    add(1, 2)

    @task
    def show_ctx(ctx):
        return {
            "ts": ctx.ts,
            "ds": ctx.ds,
            "start": ctx.data_interval_start.isoformat(),
            "tz": str(ctx.logical_date.tzinfo),
            "task": ctx.task_id,
            "try": ctx.try_number,
            "params": ctx.params,
        }

    show_ctx()

    @task
    def upstream_sum(values):
        return sum(values)

    upstream_sum([1])

    @task(on_retry=note("on_retry"), on_failure=note("on_failure"))
    def boom():
        raise ValueError("boom\\nsecond line")

    boom()

    @task(on_success=[broken_callback, note("on_success")])
    def fine():
        return None

    fine()

    @task
    def exit3():
        print("leaving")
        sys.exit(3)

    exit3()

    @task
    def sigkill():
        os.kill(os.getpid(), signal.SIGKILL)

    sigkill()

    @task
    def segfault():
        ctypes.string_at(0)

    segfault()

    @task
    def hang(ctx):
        child = subprocess.Popen(["sleep", "60"])
        if "pid_file" in ctx.params:
            with open(ctx.params["pid_file"], "w") as out:
                out.write(str(child.pid))
        print("started", child.pid, flush=True)
        time.sleep(60)

    hang()

    @task
    def big(size):
        return "x" * size

    big(100_000)

    @task
    def not_json():
        return object()

    not_json()

    @task
    def lazy_helper():
        import helpers as again
        return again.NAME

    lazy_helper()

    Shell("fail", "echo to-out; echo to-err >&2; exit 4")
    Shell("echo_ds", "echo day={{ ds }} run=$DRAYMAN_RUN_ID greeting=$GREETING; pwd",
          env={"GREETING": "hi {{ params.who }}"})
"""


def make_bundle(root: Path, helper_name: str = "one") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dags").mkdir(exist_ok=True)
    (root / "dags" / "demo.py").write_text(DAG_FILE)
    (root / "helpers.py").write_text(f"NAME = {helper_name!r}\n")
    return root


def make_workload(
    task_id: str,
    *,
    try_id: int = 1,
    try_number: int = 1,
    max_tries: int = 1,
    timeout: float | None = None,
    upstream: dict[str, object] | None = None,
    params: dict[str, object] | None = None,
) -> TryWorkload:
    run = RunContextData(
        dag_id="demo",
        run_id="manual__2024-03-10T01:30:00+00:00",
        run_type="manual",
        logical_date="2024-03-10T01:30:00+00:00",
        data_interval_start="2024-03-09T01:30:00+00:00",
        data_interval_end="2024-03-10T01:30:00+00:00",
        timezone="Europe/Paris",
        bundle_version="ab" * 32,
        params={"who": "you", **(params or {})},
    )
    return TryWorkload(
        try_id=try_id,
        ti_id=try_id,
        task_id=task_id,
        map_index=-1,
        try_number=try_number,
        max_tries=max_tries,
        fileloc="dags/demo.py",
        run=run,
        upstream_results=upstream or {},
        execution_timeout_s=timeout,
        log_path=log_relpath("demo", run.run_id, task_id, -1, try_number),
    )


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundle") / "v1")


class Runner:
    def __init__(self, bundle: Path, logs: Path) -> None:
        self.bundle = bundle
        self.logs = logs
        self.started: list[TryStarted] = []

    def __call__(self, workload: TryWorkload, **kwargs: object) -> TryOutcome:
        kwargs.setdefault("max_result_bytes", 65536)
        return run_try(
            workload,
            self.bundle,
            self.logs,
            on_started=self.started.append,
            **kwargs,  # type: ignore[arg-type]
        )

    def log(self, workload: TryWorkload) -> str:
        return (self.logs / workload.log_path).read_text()


@pytest.fixture
def runner(bundle: Path, tmp_path: Path) -> Iterator[Runner]:
    yield Runner(bundle, tmp_path / "logs")
    unload_all()  # this process is pytest's: leave no bundle on its sys.path


def test_python_task_result_and_log(runner: Runner) -> None:
    workload = make_workload("add")
    outcome = runner(workload)
    assert outcome.succeeded, outcome.error
    assert json.loads(outcome.result_json or "") == {"sum": 3, "helper": "one"}
    assert outcome.exit_code == 0 and outcome.signal is None and outcome.error is None
    assert runner.started[0].pid == outcome.pid != os.getpid()
    assert runner.started[0].started_at.tzinfo is not None
    log = runner.log(workload)
    first, *_, last = log.splitlines()
    assert first.startswith("[drayman] try 1 of 1 of demo.add (run manual__2024-03-10T01:30")
    assert f"bundle abababab) on {outcome.hostname} pid {outcome.pid}" in first
    assert "adding 1 and 2" in log
    assert "INFO demo: via logging" in log
    assert last.startswith("[drayman] success in ")


def test_context_has_aware_times_in_the_dag_timezone(runner: Runner) -> None:
    outcome = runner(make_workload("show_ctx", try_number=2, max_tries=3))
    assert outcome.succeeded, outcome.error
    assert json.loads(outcome.result_json or "") == {
        "ts": "2024-03-10T02:30:00+01:00",
        "ds": "2024-03-10",
        "start": "2024-03-09T02:30:00+01:00",
        "tz": "Europe/Paris",
        "task": "show_ctx",
        "try": 2,
        "params": {"who": "you"},
    }


def test_upstream_results_are_passed(runner: Runner) -> None:
    outcome = runner(make_workload("upstream_sum"))
    assert outcome.result_json == "1"


def test_exception_fails_with_traceback_and_runs_on_retry(runner: Runner) -> None:
    workload = make_workload("boom", try_number=1, max_tries=2)
    outcome = runner(workload)
    assert not outcome.succeeded
    assert outcome.error == "ValueError: boom"
    assert outcome.exit_code == 1
    log = runner.log(workload)
    assert "Traceback (most recent call last)" in log
    assert 'raise ValueError("boom' in log
    assert "[drayman] failed: ValueError: boom (after " in log
    assert "callback on_retry of boom try 1: ValueError: boom" in log
    assert "on_failure" not in log.replace("[drayman]", "")


def test_last_try_runs_on_failure(runner: Runner) -> None:
    workload = make_workload("boom", try_number=2, max_tries=2)
    assert not runner(workload).succeeded
    log = runner.log(workload)
    assert "callback on_failure of boom try 2: ValueError: boom" in log
    assert "[drayman] on_failure callback done" in log


def test_a_failing_callback_is_logged_and_changes_nothing(runner: Runner) -> None:
    workload = make_workload("fine")
    outcome = runner(workload)
    assert outcome.succeeded and outcome.result_json == "null"
    log = runner.log(workload)
    assert "RuntimeError: the notifier is down" in log
    assert "callback on_success of fine try 1: None" in log  # the next one still ran
    assert "[drayman] on_success callback failed: RuntimeError: the notifier is down" in log


def test_sys_exit_code(runner: Runner) -> None:
    workload = make_workload("exit3")
    outcome = runner(workload)
    assert not outcome.succeeded
    assert outcome.exit_code == 3 and outcome.signal is None
    assert outcome.error == "exited with code 3"
    assert "leaving" in runner.log(workload)


@pytest.mark.parametrize(
    ("task_id", "number", "name"), [("sigkill", 9, "SIGKILL"), ("segfault", 11, "SIGSEGV")]
)
def test_death_by_signal(runner: Runner, task_id: str, number: int, name: str) -> None:
    outcome = runner(make_workload(task_id))
    assert not outcome.succeeded
    assert outcome.signal == number and outcome.exit_code is None
    assert outcome.error == f"killed by signal {number} ({name})"


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"  # a zombie nobody reaped yet is dead too


def test_timeout_kills_the_task_and_its_children(runner: Runner, tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    workload = make_workload("hang", timeout=0.5, params={"pid_file": str(pid_file)})
    started = time.monotonic()
    outcome = runner(workload)
    assert time.monotonic() - started < 3
    assert outcome.timed_out and not outcome.succeeded
    assert outcome.error == "execution_timeout of 0.5 s exceeded"
    assert outcome.signal == 15
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 2
    while not _gone(grandchild) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _gone(grandchild)
    assert "started" in runner.log(workload)


def test_shell_task_exit_code_and_output(runner: Runner) -> None:
    workload = make_workload("fail")
    outcome = runner(workload)
    assert not outcome.succeeded
    assert outcome.exit_code == 4 and outcome.error == "exited with code 4"
    log = runner.log(workload)
    assert "to-out" in log and "to-err" in log


def test_shell_command_is_templated_and_runs_in_the_bundle(runner: Runner) -> None:
    workload = make_workload("echo_ds")
    echo = io.StringIO()
    outcome = runner(workload, echo=echo)
    assert outcome.succeeded, outcome.error
    assert outcome.result_json is None
    log = runner.log(workload)
    assert "day=2024-03-10 run=manual__2024-03-10T01:30:00+00:00 greeting=hi you" in log
    assert str(runner.bundle) in log  # pwd
    assert echo.getvalue() == log


def test_result_over_the_cap_fails_with_advice(runner: Runner) -> None:
    workload = make_workload("big")
    outcome = runner(workload, max_result_bytes=65536)
    assert not outcome.succeeded and outcome.result_json is None
    assert outcome.error == (
        "task 'big' returned 97.7 KB; results are capped at 64 KB (DRAYMAN_MAX_RESULT_BYTES): "
        "write big data to storage and return its path"
    )
    assert outcome.error in runner.log(workload)


def test_result_that_is_not_json(runner: Runner) -> None:
    outcome = runner(make_workload("not_json"))
    assert not outcome.succeeded
    assert "task 'not_json' returned a value that is not JSON" in (outcome.error or "")


def test_missing_task_fails_in_place(runner: Runner) -> None:
    workload = make_workload("renamed_away")
    outcome = runner(workload)
    assert not outcome.succeeded
    assert outcome.error == "DAG 'demo' in dags/demo.py no longer has a task 'renamed_away'"
    assert runner.started[0].pid == os.getpid() == outcome.pid
    assert "LoadError" in runner.log(workload)


def test_bundle_versions_do_not_share_helper_modules(runner: Runner, tmp_path: Path) -> None:
    other = make_bundle(tmp_path / "v2", helper_name="two")
    first = runner(make_workload("add"))
    runner.bundle = other
    second = runner(make_workload("add", try_id=2))
    third = runner(make_workload("lazy_helper", try_id=3))
    assert json.loads(first.result_json or "")["helper"] == "one"
    assert json.loads(second.result_json or "")["helper"] == "two"
    assert third.result_json == '"two"'


def test_interrupt_cancels_a_running_try(runner: Runner) -> None:
    read_fd, write_fd = os.pipe()

    def check() -> StopTry | None:
        os.read(read_fd, 1)
        return StopTry("cancelled")

    os.write(write_fd, b"x")  # already readable: cancels at once
    try:
        outcome = runner(make_workload("hang"), interrupt=Interrupt(read_fd, check))
    finally:
        os.close(read_fd)
        os.close(write_fd)
    assert not outcome.succeeded and not outcome.timed_out
    assert outcome.error == "cancelled (killed by signal 15 (SIGTERM))"


def test_dag_callback_workload(bundle: Path, tmp_path: Path) -> None:
    run = make_workload("add").run
    workload = CallbackWorkload(
        callback="on_success",
        fileloc="dags/demo.py",
        run=run,
        reason="all tasks succeeded",
        log_path="demo/callbacks.log",
    )
    try:
        run_callback_workload(workload, bundle, tmp_path)
    finally:
        unload_all()
    log = (tmp_path / "demo" / "callbacks.log").read_text()
    assert "callback dag_on_success of  try 0: all tasks succeeded" in log
    assert "[drayman] on_success callback done" in log


def test_a_try_dies_with_the_process_that_forked_it() -> None:
    """kill -9 of a worker must not leave its try running unseen: a retry would overlap it."""
    code = (
        "import time\n"
        "from drayman.runner.process import fork\n"
        "child = fork(lambda _fd: time.sleep(60) or 0)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        try_pid = int(parent.stdout.readline())
        assert _alive(try_pid)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 5
        while _alive(try_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(try_pid), "the try outlived the worker that forked it"
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie nobody reaps (PID 1 may not, in containers)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
