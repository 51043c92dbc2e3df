"""The headline guarantee: editing DAG code under a running scheduler needs no restart, and a
run that started on one version of the code finishes on that version.

Task `write` of run 1 is held (it waits for a gate file, at most ~20 s) until the edit is
published and run 2 is triggered, so run 1 provably spans the deploy; its downstream task
`report` starts only after the edit. Both tasks of each run must show that run's code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from support.cli import Drayman, Server

LIVE_DAG = """
    import time
    from pathlib import Path

    from drayman import DAG, task

    CODE = "{version}"

    with DAG("live", schedule=None, tags=["live"]):

        @task
        def write(ctx) -> str:
            gate = Path(ctx.conf["gate"])
            while not gate.exists():  # the test opens it: until then, the run is running
                time.sleep(0.1)
            time.sleep({sleep})
            Path(ctx.conf["out"]).write_text(CODE)
            print(f"write ran code {{CODE}}")
            return CODE

        @task
        def report(written: str) -> None:
            print(f"report ran code {version_b} and saw {{written}}")

        report(write())
"""


def live_dag(version: str, sleep: float = 0.0) -> str:
    return LIVE_DAG.format(version=version, version_b=version.upper(), sleep=sleep)


def other_dag(dag_id: str) -> str:
    return f"""
        from drayman import DAG, Shell

        with DAG("{dag_id}", schedule=None):
            Shell("noop", "echo {dag_id}")
    """


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def scheduler(
    request: pytest.FixtureRequest,
    make_drayman: Callable[..., Drayman],
    database_url_for: Callable[[str], AbstractContextManager[str | None]],
) -> Iterator[tuple[Drayman, Server]]:
    backend = request.param
    with database_url_for(backend) as url:
        d = make_drayman(f"live-{backend}", database_url=url)
        d.write_dag("live.py", live_dag("v1"))
        d.write_dag("doomed.py", other_dag("doomed"))
        d.ok("db", "migrate")
        with d.serve("scheduler") as server:
            yield d, server


def _task(shown: dict[str, Any], task_id: str) -> dict[str, Any]:
    return next(ti for ti in shown["task_instances"] if ti["task_id"] == task_id)


@pytest.mark.slow
def test_edit_while_running_is_published_without_restart(
    scheduler: tuple[Drayman, Server], tmp_path: Path
) -> None:
    d, server = scheduler
    gate = tmp_path / "gate"
    out1, out2 = tmp_path / "out1.txt", tmp_path / "out2.txt"
    v1 = d.dags_by_id()["live"]["bundle_version"]

    run1 = d.trigger("live", {"out": str(out1), "gate": str(gate)})

    def write_running() -> bool:
        tries = _task(d.show("live", run1), "write")["tries"]
        return bool(tries) and tries[-1]["state"] == "running"

    d.wait_for(write_running, 30, f"task write of run {run1} to be running")

    d.write_dag("live.py", live_dag("v2"))
    v2 = d.wait_for(
        lambda: (v := d.dags_by_id()["live"]["bundle_version"]) != v1 and v,
        15,
        "a new bundle version of DAG live after the edit",
    )
    v2_seen = datetime.now(UTC)
    assert d.show("live", run1)["state"] == "running", "run 1 must still be running"
    run2 = d.trigger("live", {"out": str(out2), "gate": str(gate)})
    gate.touch()

    shown1 = d.wait_run("live", run1)
    shown2 = d.wait_run("live", run2)

    server.check_alive()  # the same scheduler process did all of it
    assert "bundle.published" in server.output()
    assert (shown1["bundle_version"], shown2["bundle_version"]) == (v1, v2)
    assert out1.read_text() == "v1"
    assert out2.read_text() == "v2"
    logs = {
        (n, task_id): Path(_task(shown, task_id)["tries"][-1]["log_path"]).read_text()
        for n, shown in ((1, shown1), (2, shown2))
        for task_id in ("write", "report")
    }
    assert "write ran code v1" in logs[1, "write"]
    assert "report ran code V1 and saw v1" in logs[1, "report"]
    assert "write ran code v2" in logs[2, "write"]
    assert "report ran code V2 and saw v2" in logs[2, "report"]
    # run 1's report started after v2 was live (its write was held until then), yet ran v1
    report1 = _task(shown1, "report")["tries"][0]
    assert datetime.fromisoformat(report1["start_date"]) > v2_seen


@pytest.mark.slow
def test_new_file_appears_and_deleted_file_disappears(
    scheduler: tuple[Drayman, Server],
) -> None:
    d, _server = scheduler
    assert "doomed" in d.dags_by_id()
    d.write_dag("extra.py", other_dag("extra"))
    d.wait_for(lambda: "extra" in d.dags_by_id(), 15, "DAG extra in `dags list`")
    (d.dags / "doomed.py").unlink()
    d.wait_for(lambda: "doomed" not in d.dags_by_id(), 15, "DAG doomed gone from `dags list`")
    everything = d.dags_by_id("--all")
    assert everything["doomed"]["is_active"] is False
    assert everything["extra"]["is_active"] is True
    # a DAG that is no longer defined cannot be triggered; the new one can
    refused = d.cli("dags", "trigger", "doomed")
    assert refused.returncode != 0 and "no longer defined" in refused.stderr, d.last
    d.wait_run("extra", d.trigger("extra"))
