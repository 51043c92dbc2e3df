"""How tasks fail, as the CLI reports it: a try killed by a signal and retried, a try past its
execution_timeout, an exception with no retries and its downstream; and `dags test` /
`tasks test`, which run DAG code right here without a scheduler."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from support.cli import Drayman, Server

KILLS_ITSELF = """
    import os
    import signal
    from pathlib import Path

    from drayman import DAG, task

    with DAG("kills_itself", schedule=None):

        @task(retries=1, retry_delay=0)
        def die_once(ctx) -> str:
            marker = Path(ctx.conf["marker"])
            if not marker.exists():
                marker.write_text("killed once")
                print("about to SIGKILL myself", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
            print(f"try {ctx.try_number}: alive")
            return "alive"

        die_once()
"""

TIMES_OUT = """
    import time

    from drayman import DAG, task

    with DAG("times_out", schedule=None):

        @task(execution_timeout=1)
        def slow() -> None:
            print("sleeping 30 s", flush=True)
            time.sleep(30)

        slow()
"""

RAISES = """
    from drayman import DAG, Shell, task

    with DAG("raises", schedule=None):

        @task(retries=0)
        def explode() -> None:
            print("about to fail")
            raise ValueError("the input file is empty")

        explode() >> Shell("after", "echo must not run")
"""

PASSES = """
    from drayman import DAG, Shell, task

    with DAG("passes", schedule=None, params={"who": "world"}):

        @task
        def greet(ctx) -> str:
            print(f"hello {ctx.params['who']} from python")
            return "greeted"

        @task
        def shout(greeting: str) -> None:
            print(f"shouting: {greeting.upper()}")

        shout(greet()) >> Shell("echo", "echo hello {{ params.who }} from shell")
"""


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def scheduler(
    request: pytest.FixtureRequest,
    make_drayman: Callable[..., Drayman],
    database_url_for: Callable[[str], AbstractContextManager[str | None]],
) -> Iterator[tuple[Drayman, Server]]:
    backend = request.param
    with database_url_for(backend) as url:
        d = make_drayman(f"failures-{backend}", database_url=url)
        d.write_dag("kills_itself.py", KILLS_ITSELF)
        d.write_dag("times_out.py", TIMES_OUT)
        d.write_dag("raises.py", RAISES)
        d.ok("db", "migrate")
        with d.serve("scheduler") as server:
            yield d, server


@pytest.fixture(scope="module")
def folder(make_drayman: Callable[..., Drayman]) -> Drayman:
    """A DAG folder and a migrated database, no scheduler: `dags test` needs neither."""
    d = make_drayman("dags-test")
    d.write_dag("raises.py", RAISES)
    d.write_dag("passes.py", PASSES)
    d.ok("db", "migrate")
    return d


def _task(shown: dict[str, Any], task_id: str) -> dict[str, Any]:
    return next(ti for ti in shown["task_instances"] if ti["task_id"] == task_id)


def _seconds(attempt: dict[str, Any]) -> float:
    started = datetime.fromisoformat(attempt["start_date"])
    return (datetime.fromisoformat(attempt["end_date"]) - started).total_seconds()


@pytest.mark.slow
def test_try_killed_by_sigkill_is_retried(
    scheduler: tuple[Drayman, Server], tmp_path: Path
) -> None:
    d, _server = scheduler
    marker = tmp_path / "marker"
    shown = d.wait_run("kills_itself", d.trigger("kills_itself", {"marker": str(marker)}))
    ti = _task(shown, "die_once")
    assert ti["state"] == "success"
    first, second = ti["tries"]
    assert first["state"] == "failed"
    assert first["signal"] == 9, first
    assert first["exit_code"] is None, first
    assert "SIGKILL" in (first["error"] or "") or "signal 9" in (first["error"] or ""), first
    assert "about to SIGKILL myself" in Path(first["log_path"]).read_text()
    assert second["state"] == "success" and second["exit_code"] == 0, second
    assert second["signal"] is None
    assert "try 2: alive" in Path(second["log_path"]).read_text()
    # the text form shows the signal in the exit column
    table = d.ok("runs", "show", shown["run_id"], "--dag", "kills_itself")
    assert "signal 9" in table


def test_execution_timeout_fails_the_try_and_the_run(scheduler: tuple[Drayman, Server]) -> None:
    d, _server = scheduler
    started = time.monotonic()
    shown = d.wait_run("times_out", d.trigger("times_out"), state="failed", timeout=25)
    assert time.monotonic() - started < 20, "the 30 s sleep was not cut short"
    ti = _task(shown, "slow")
    assert ti["state"] == "failed"
    (only,) = ti["tries"]
    assert only["state"] == "failed"
    assert "execution_timeout of 1 s exceeded" in only["error"], only
    assert _seconds(only) < 10, only
    assert "sleeping 30 s" in Path(only["log_path"]).read_text()


@pytest.mark.slow
def test_exception_without_retries_fails_downstream_and_run(
    scheduler: tuple[Drayman, Server],
) -> None:
    d, _server = scheduler
    shown = d.wait_run("raises", d.trigger("raises"), state="failed")
    explode, after = _task(shown, "explode"), _task(shown, "after")
    assert explode["state"] == "failed"
    (only,) = explode["tries"]
    assert only["error"] == "ValueError: the input file is empty", only
    assert only["exit_code"] not in (None, 0)
    log = Path(only["log_path"]).read_text()
    assert "about to fail" in log and "Traceback" in log
    assert after["state"] == "upstream_failed"
    assert after["tries"] == []
    text = d.ok("runs", "show", shown["run_id"], "--dag", "raises")
    assert "explode try 1: ValueError: the input file is empty" in text


@pytest.mark.slow
def test_dags_test_passing_dag(folder: Drayman) -> None:
    d = folder
    proc = d.cli("dags", "test", "passes", "--conf", '{"who": "tester"}')
    assert proc.returncode == 0, d.last
    # each task's log goes to the terminal as it runs
    assert "hello tester from python" in proc.stdout, d.last
    assert "shouting: GREETED" in proc.stdout, d.last
    assert "hello tester from shell" in proc.stdout, d.last
    assert "success" in proc.stderr.splitlines()[-1], d.last
    # a test run never touches the real database
    assert d.runs() == []
    assert d.json("dags", "list") == []


def test_dags_test_failing_dag(folder: Drayman) -> None:
    d = folder
    proc = d.cli("dags", "test", "raises")
    assert proc.returncode == 1, d.last
    out = proc.stdout + proc.stderr
    assert "ValueError: the input file is empty" in out, d.last
    assert "upstream_failed" in out, d.last
    assert "failed" in proc.stderr.splitlines()[-1], d.last


@pytest.mark.slow
def test_tasks_test_runs_one_task(folder: Drayman) -> None:
    d = folder
    proc = d.cli("tasks", "test", "passes", "greet")
    assert proc.returncode == 0, d.last
    assert "hello world from python" in proc.stdout, d.last
    assert "shouting" not in proc.stdout + proc.stderr, d.last  # only the one task ran
    assert "passes.greet: success" in proc.stderr, d.last
    assert 'result: "greeted"' in proc.stderr, d.last

    failing = d.cli("tasks", "test", "raises", "explode")
    assert failing.returncode == 1, d.last
    assert "ValueError: the input file is empty" in failing.stdout + failing.stderr, d.last

    unknown = d.cli("tasks", "test", "passes", "nope")
    assert unknown.returncode == 3, d.last
    assert "no task 'nope'" in unknown.stderr and "greet" in unknown.stderr, d.last
