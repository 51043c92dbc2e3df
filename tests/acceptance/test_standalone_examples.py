"""`drayman standalone` with no DAG folder: the bundled examples run to success by themselves."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from support.cli import Drayman, Server

EXAMPLES = ("flaky_api", "regional_fanout", "sales_daily", "shell_pipeline")


@pytest.fixture(scope="module")
def standalone(make_drayman: Callable[..., Drayman]) -> Iterator[tuple[Drayman, Server]]:
    d = make_drayman("standalone")
    d.env["DRAYMAN_DAGS_FOLDER"] = str(d.root / "no-such-folder")
    with d.serve("standalone") as server:
        yield d, server


def _successful_runs(d: Drayman) -> dict[str, dict[str, Any]]:
    """The newest successful run of each example DAG, once every one of them has one."""
    found: dict[str, dict[str, Any]] = {}
    for run in d.runs():
        if run["state"] == "success":
            found.setdefault(run["dag_id"], run)
    return found if set(EXAMPLES) <= set(found) else {}


@pytest.fixture(scope="module")
def finished(standalone: tuple[Drayman, Server]) -> dict[str, dict[str, Any]]:
    d, _server = standalone
    return d.wait_for(lambda: _successful_runs(d), 90, "a successful run of each example DAG")


def test_banner_names_the_examples(standalone: tuple[Drayman, Server]) -> None:
    d, server = standalone
    out = server.output()
    assert "(the bundled examples)" in out
    assert str(d.home) in out  # the SQLite database and the logs live under DRAYMAN_HOME
    assert not (d.root / "no-such-folder").exists()


def test_dags_list_has_the_four_examples(standalone: tuple[Drayman, Server]) -> None:
    d, _server = standalone
    listed = d.json("dags", "list")
    assert sorted(item["dag_id"] for item in listed) == sorted(EXAMPLES)
    for item in listed:
        assert item["is_active"] and not item["is_paused"]
        assert len(item["bundle_version"]) == 64
    assert d.ok("dags", "errors").strip() == "no import errors"


@pytest.mark.slow
def test_every_example_succeeds(
    standalone: tuple[Drayman, Server], finished: dict[str, dict[str, Any]]
) -> None:
    d, server = standalone
    for dag_id in EXAMPLES:
        shown = d.show(dag_id, finished[dag_id]["run_id"])
        assert shown["state"] == "success"
        assert shown["task_instances"], f"{dag_id} has no task instances"
        mapped = {ti["task_id"] for ti in shown["task_instances"] if ti["map_index"] >= 0}
        for ti in shown["task_instances"]:
            if ti["task_id"] in mapped and ti["map_index"] < 0:
                # a mapped task's placeholder gives way to one instance per element
                assert ti["state"] == "removed" and not ti["tries"], f"{dag_id}: {ti}"
                continue
            assert ti["state"] == "success", f"{dag_id}.{ti['task_id']}: {ti}"
        # standalone announces each finished run on its stdout
        assert f"run {dag_id} {finished[dag_id]['run_id']}: success" in server.output()
    fanout = d.show("regional_fanout", finished["regional_fanout"]["run_id"])
    regions = [
        ti for ti in fanout["task_instances"] if ti["task_id"] == "process" and ti["map_index"] >= 0
    ]
    assert sorted(ti["map_index"] for ti in regions) == [0, 1, 2, 3, 4]


def test_flaky_fetch_failed_once_then_succeeded(
    standalone: tuple[Drayman, Server], finished: dict[str, dict[str, Any]]
) -> None:
    d, _server = standalone
    shown = d.show("flaky_api", finished["flaky_api"]["run_id"])
    fetch = next(ti for ti in shown["task_instances"] if ti["task_id"] == "fetch")
    tries = fetch["tries"]
    assert [t["try_number"] for t in tries] == [1, 2]
    assert [t["state"] for t in tries] == ["failed", "success"]
    assert "503 Service Unavailable" in tries[0]["error"]
    assert tries[0]["exit_code"] not in (None, 0)
    assert tries[1]["exit_code"] == 0 and tries[1]["error"] is None
    # the retry started after the failed try ended
    assert _when(tries[1]["start_date"]) >= _when(tries[0]["end_date"])
    assert "503 Service Unavailable" in Path(tries[0]["log_path"]).read_text()
    second = Path(tries[1]["log_path"]).read_text()
    assert "try 2: got 42 records" in second


def test_tries_record_host_pid_times_and_log(
    standalone: tuple[Drayman, Server], finished: dict[str, dict[str, Any]]
) -> None:
    d, _server = standalone
    expected_output = {
        ("sales_daily", "load"): "loaded 4 rows for",
        ("sales_daily", "report"): "warehouse updated for",
        ("regional_fanout", "summarize"): "total",
        ("shell_pipeline", "count"): "note.txt",
        ("flaky_api", "store"): "stored 42 records",
    }
    checked = set()
    for dag_id in EXAMPLES:
        shown = d.show(dag_id, finished[dag_id]["run_id"])
        for ti in shown["task_instances"]:
            for attempt in ti["tries"]:
                where = f"{dag_id}.{ti['task_id']}[{ti['map_index']}] try {attempt['try_number']}"
                assert attempt["hostname"], where
                assert isinstance(attempt["pid"], int) and attempt["pid"] > 0, where
                queued, started, ended = (
                    _when(attempt[k]) for k in ("queued_at", "start_date", "end_date")
                )
                assert queued <= started <= ended, where
                assert started.utcoffset() is not None and started.utcoffset().total_seconds() == 0
                log = Path(attempt["log_path"])
                assert log.is_file(), where
                assert log.is_relative_to(d.home / "logs"), where
                text = log.read_text()
                assert f"try {attempt['try_number']} of" in text, where
                want = expected_output.get((dag_id, ti["task_id"]))
                if want and attempt["state"] == "success":
                    assert want in text, f"{where}: {want!r} not in its log:\n{text}"
                    checked.add((dag_id, ti["task_id"]))
    assert checked == set(expected_output)


def _when(text: str | None) -> datetime:
    assert text is not None
    return datetime.fromisoformat(text)
