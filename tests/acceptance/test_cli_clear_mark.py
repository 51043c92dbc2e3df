"""Clearing and marking through the real CLI, with `drayman scheduler` running: a failed task
cleared with its downstream reruns to success, a run cleared reruns whole, a task marked
failed fails its run, a running task cancelled is killed and fails; bad names are exit code 3,
and a dry run changes nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from support.cli import Drayman

FLAKY = """
    from pathlib import Path

    from drayman import DAG, task

    with DAG("flaky", schedule=None):

        @task
        def extract() -> int:
            return 1

        @task
        def call_api(ctx, x: int) -> int:
            if not Path(ctx.conf["fixed"]).exists():
                raise RuntimeError("the API is down")
            return x + 1

        @task
        def load(y: int) -> int:
            return y * 10

        load(call_api(extract()))
"""


HANGING = """
    import os
    import time
    from pathlib import Path

    from drayman import DAG, task

    with DAG("hanging", schedule=None):

        @task(retries=3)
        def hang(ctx) -> None:
            Path(ctx.conf["pid_file"]).write_text(str(os.getpid()))
            time.sleep(120)

        hang()
"""


@pytest.fixture(scope="module")
def drayman_running(make_drayman: Callable[..., Drayman]) -> Iterator[Drayman]:
    d = make_drayman("clear-mark")
    d.write_dag("flaky.py", FLAKY)
    d.write_dag("hanging.py", HANGING)
    d.ok("db", "migrate")
    with d.serve("scheduler"):
        yield d


def _tries(shown: dict[str, Any]) -> dict[str, list[str]]:
    return {ti["task_id"]: [t["state"] for t in ti["tries"]] for ti in shown["task_instances"]}


@pytest.mark.slow
def test_clear_a_failed_task_and_its_downstream(drayman_running: Drayman, tmp_path: Path) -> None:
    d = drayman_running
    fixed = tmp_path / "fixed"
    run_id = d.trigger("flaky", {"fixed": str(fixed)})
    d.wait_run("flaky", run_id, state="failed")

    dry = d.json("tasks", "clear", "flaky", run_id, "call_api", "--downstream", "--dry-run")
    assert dry["dry_run"] is True
    assert [ti["task_id"] for ti in dry["task_instances"]] == ["call_api", "load"], d.last
    assert d.show("flaky", run_id)["state"] == "failed", "a dry run must change nothing"
    unknown = d.cli("tasks", "clear", "flaky", run_id, "no_such_task", "--yes")
    assert unknown.returncode == 3 and "no task 'no_such_task'" in unknown.stderr, d.last

    fixed.touch()
    out = d.ok("tasks", "clear", "flaky", run_id, "call_api", "--downstream", "--yes")
    assert "cleared 2 task instance(s) of flaky run" in out, d.last
    shown = d.wait_run("flaky", run_id, state="success", timeout=30)
    assert _tries(shown) == {
        "extract": ["success"],
        "call_api": ["failed", "success"],
        "load": ["success"],
    }


@pytest.mark.slow
def test_clear_a_run_and_mark_a_task_failed(drayman_running: Drayman, tmp_path: Path) -> None:
    d = drayman_running
    fixed = tmp_path / "fixed"
    fixed.touch()
    run_id = d.trigger("flaky", {"fixed": str(fixed)})
    d.wait_run("flaky", run_id)

    cleared = d.json("runs", "clear", "flaky", run_id, "--yes")
    assert len(cleared["task_instances"]) == 3, d.last
    shown = d.wait_run("flaky", run_id, timeout=30)
    assert _tries(shown) == {t: ["success", "success"] for t in ("extract", "call_api", "load")}

    out = d.ok("tasks", "mark", "flaky", run_id, "load", "--state", "failed")
    assert "marked failed 1 task instance(s)" in out, d.last
    shown = d.wait_run("flaky", run_id, state="failed", timeout=30)
    load = next(ti for ti in shown["task_instances"] if ti["task_id"] == "load")
    assert load["state"] == "failed" and len(load["tries"]) == 2, load

    audited = d.json("audit", "list", "--action", "run.", "--limit", "1")
    audited += d.json("audit", "list", "--action", "task.mark", "--limit", "1")
    assert [(e["action"], e["object_id"], e["detail"]["task_instances"]) for e in audited] == [
        ("run.clear", f"flaky/{run_id}", 3),
        ("task.mark", f"flaky/{run_id}/load", 1),
    ], audited


@pytest.mark.slow
def test_cancel_a_running_task_kills_it_and_fails_it(
    drayman_running: Drayman, tmp_path: Path
) -> None:
    d = drayman_running
    pid_file = tmp_path / "pid"
    run_id = d.trigger("hanging", {"pid_file": str(pid_file)})
    d.wait_for(lambda: pid_file.exists() and pid_file.read_text(), 30, "the task running")
    pid = int(pid_file.read_text())

    out = d.ok("tasks", "cancel", "hanging", run_id, "hang", "--yes")
    assert "cancelled 1 task instance(s)" in out, d.last
    shown = d.wait_run("hanging", run_id, state="failed", timeout=30)
    (hang,) = shown["task_instances"]
    assert [t["state"] for t in hang["tries"]] == ["failed"], "a cancelled task is not retried"
    d.wait_for(lambda: not Path(f"/proc/{pid}").exists(), 10, "the try's process gone")

    again = d.cli("tasks", "cancel", "hanging", run_id, "hang", "--yes")
    assert again.returncode != 0 and "not queued or running" in again.stderr, d.last


def test_unknown_names_are_not_found(drayman_running: Drayman) -> None:
    d = drayman_running
    for args in (
        ("tasks", "clear", "nope", "r1", "--yes"),
        ("tasks", "clear", "flaky", "no-such-run", "call_api", "--yes"),
        ("runs", "clear", "flaky", "no-such-run", "--yes"),
    ):
        proc = d.cli(*args)
        assert proc.returncode == 3, d.last
        assert proc.stderr.startswith("error: "), d.last
    proc = d.cli("tasks", "mark", "flaky", "r1", "load", "--state", "running")
    assert proc.returncode == 2, d.last
