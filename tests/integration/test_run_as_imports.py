"""With `run_as_user`, a DAG file is imported only by processes of that user: each try's
child, and each callback's. The warm worker (drayman's user) never runs it; the callbacks
the task has still run, a DAG file that fails to import still fails only its try."""

from __future__ import annotations

import pwd
from collections.abc import Iterator
from pathlib import Path

import pytest

from drayman.config import Settings
from drayman.executors.local import LocalExecutor
from drayman.workloads import CallbackWorkload
from support.accounts import TASK_USER
from support.executor import VERSION, Events, outcomes, workload

DAG_FILE = """
import os
from drayman import DAG, task

print(f"imported by uid {os.getuid()}", flush=True)


def said(ctx, *args):
    print(f"callback ran as uid {os.getuid()}", flush=True)


with DAG("ex", on_failure=said):

    @task(on_success=said)
    def noop():
        return os.getuid()

    noop()

    @task(on_failure=said, on_retry=said)
    def sleep():
        raise RuntimeError("no")

    sleep()
"""


@pytest.fixture
def home(open_root: Path) -> Path:
    bundle = open_root / "home" / "bundles" / VERSION
    bundle.mkdir(parents=True)
    for path in (open_root / "home", open_root / "home" / "bundles", bundle):
        path.chmod(0o755)
    (bundle / "dag.py").write_text(DAG_FILE)
    (bundle / "broken.py").write_text("raise ImportError('broken on purpose')\n")
    return open_root / "home"


@pytest.fixture
def executor(home: Path, task_user: pwd.struct_passwd) -> Iterator[LocalExecutor]:
    executor = LocalExecutor(Settings(home=home, parallelism=1, run_as_user=TASK_USER))
    executor.bundles.cached.add(VERSION)
    executor.start()
    yield executor
    executor.stop(grace_s=0)


def _log(home: Path, log_path: str) -> str:
    return (home / "logs" / log_path).read_text()


def test_the_try_and_its_callback_import_the_dag_file_as_the_task_user(
    executor: LocalExecutor, home: Path, task_user: pwd.struct_passwd
) -> None:
    uid = task_user.pw_uid
    seen = Events(executor)
    executor.submit([workload(1)])
    outcome = outcomes(seen.until(lambda ev: 1 in outcomes(ev)))[1]
    assert outcome.succeeded and outcome.result_json == str(uid), outcome
    seen.until(lambda _: executor.open_slots() == 1)  # the outcome comes before callbacks
    log = _log(home, workload(1).log_path)
    assert log.count(f"imported by uid {uid}") == 2, log  # the try, then its callback
    assert "imported by uid 0" not in log, log
    assert f"callback ran as uid {uid}" in log, log
    assert "on_success callback done" in log, log


def test_a_failing_try_runs_its_failure_callback(
    executor: LocalExecutor, home: Path, task_user: pwd.struct_passwd
) -> None:
    seen = Events(executor)
    executor.submit([workload(1, "sleep")])
    outcome = outcomes(seen.until(lambda ev: 1 in outcomes(ev)))[1]
    assert not outcome.succeeded and outcome.error == "RuntimeError: no", outcome
    seen.until(lambda _: executor.open_slots() == 1)  # the outcome comes before callbacks
    log = _log(home, workload(1, "sleep").log_path)
    assert "running on_failure callback" in log, log
    assert f"callback ran as uid {task_user.pw_uid}" in log, log


def test_a_dag_file_that_fails_to_import_fails_its_try_with_the_error(
    executor: LocalExecutor, home: Path
) -> None:
    broken = workload(1)
    broken = type(broken)(**{**broken.__dict__, "fileloc": "broken.py"})
    seen = Events(executor)
    executor.submit([broken])
    outcome = outcomes(seen.until(lambda ev: 1 in outcomes(ev)))[1]
    assert not outcome.succeeded
    assert outcome.error is not None and "broken on purpose" in outcome.error, outcome
    assert "ImportError: broken on purpose" in _log(home, broken.log_path)


def test_a_dag_callback_imports_the_file_as_the_task_user(
    executor: LocalExecutor, home: Path, task_user: pwd.struct_passwd
) -> None:
    run = workload(1).run
    callback = CallbackWorkload(
        callback="on_failure", fileloc="dag.py", run=run, reason="it failed", log_path="cb.log"
    )
    executor.submit([callback])
    seen = Events(executor)
    seen.until(lambda _: executor.open_slots() == 1 and not executor.running_try_ids())
    log = _log(home, "cb.log")
    assert "on_failure callback done" in log, log
    assert f"imported by uid {task_user.pw_uid}" in log, log
    assert f"callback ran as uid {task_user.pw_uid}" in log, log
