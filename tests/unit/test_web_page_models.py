"""The pure parts of the pages: grid, graph layout, Gantt, durations, the conf form, log pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from drayman.conf import DEFAULT_LIMITS
from drayman.exceptions import ParamsError
from drayman.spec import DagSpec, ParamSpec, TaskSpec
from drayman.web.pages import conf_form, durations, gantt, graph, grid, logview

T0 = datetime(2026, 3, 8, 10, 0, tzinfo=UTC)


def spec(**upstream: tuple[str, ...]) -> DagSpec:
    tasks = {t: TaskSpec(task_id=t, kind="python", upstream=ups) for t, ups in upstream.items()}
    return DagSpec(dag_id="d", fileloc="d.py", tasks=tasks)


def test_graph_puts_every_task_right_of_its_upstream_tasks() -> None:
    dag = spec(load=("transform", "extract"), transform=("extract",), extract=(), audit=())
    assert graph.layers(dag) == {"extract": 0, "audit": 0, "transform": 1, "load": 2}
    laid = graph.layout(dag)
    x = {n.task_id: n.x for n in laid.nodes}
    assert x["extract"] < x["transform"] < x["load"], x
    assert len(laid.edges) == 3 and all(e.path.startswith("M") for e in laid.edges)


def test_graph_of_a_long_chain_needs_no_recursion() -> None:
    chain = {f"t{i}": (f"t{i - 1}",) if i else () for i in range(3000)}
    assert graph.layers(spec(**chain))["t2999"] == 2999


def ti(run: int, task: str, state: str, try_id: int | None, map_index: int = -1) -> object:
    return SimpleNamespace(
        dag_run_id=run,
        task_id=task,
        state=state,
        try_id=try_id,
        map_index=map_index,
        start_date=T0,
        end_date=T0 + timedelta(seconds=run),
    )


def run(pk: int, state: str) -> object:
    return SimpleNamespace(
        id=pk,
        run_id=f"r{pk}",
        state=state,
        run_type="manual",
        logical_date=T0 + timedelta(days=pk),
        start_date=T0,
        end_date=None,
    )


def test_grid_puts_runs_oldest_first_and_a_mapped_task_shows_its_worst_element() -> None:
    dag = spec(fan=(), sink=("fan",))
    tis = [
        ti(2, "fan", "success", 11, 0),
        ti(2, "fan", "failed", 12, 1),
        ti(2, "fan", "removed", None),
        ti(1, "fan", "success", 5),
        ti(1, "gone", "success", 6),
    ]
    built = grid.build([run(2, "running"), run(1, "success")], tis, dag)
    assert [c.run_id for c in built.columns] == ["r1", "r2"], "oldest run on the left"
    assert built.task_ids == ["fan", "sink", "gone"], "spec order, then tasks old runs had"
    cell = built.cells[(2, "fan")]
    assert (cell.state, cell.try_id, cell.elements) == ("failed", 12, 2), cell
    assert built.unfinished, "a running column keeps the page polling"
    assert (1, "sink") not in built.cells


def test_durations_draw_a_line_per_task_and_a_dot_for_a_lone_run() -> None:
    built = grid.build([run(2, "success"), run(1, "success")], [], spec(a=()))
    chart = durations.chart(built, [ti(1, "a", "success", 1), ti(2, "a", "success", 2)])
    assert [line.task_id for line in chart.lines] == ["a"] and chart.max_s == 2.0
    assert chart.lines[0].points.count(",") == 2 and chart.lines[0].dots == [], chart
    alone = durations.chart(built, [ti(1, "a", "success", 1)])
    assert len(alone.lines[0].dots) == 1, "a task with one finished run is drawn as a dot"


def test_gantt_draws_the_queue_wait_and_the_run_apart_with_a_row_per_try() -> None:
    def attempt(number: int, queued: int, start: int | None, end: int | None) -> object:
        at = T0 + timedelta(seconds=queued)
        return SimpleNamespace(
            id=number,
            task_id="fetch",
            map_index=-1,
            try_number=number,
            state="failed" if number == 1 else "running",
            queued_at=at,
            start_date=None if start is None else T0 + timedelta(seconds=start),
            end_date=None if end is None else T0 + timedelta(seconds=end),
        )

    chart = gantt.chart([attempt(1, 0, 2, 4), attempt(2, 6, 8, None)], T0 + timedelta(seconds=10))
    first, second = chart.bars
    assert first.label == "fetch" and second.label == "fetch · try 2", "retries are rows"
    assert first.queued_w == pytest.approx(2 / 10 * gantt.CHART_W, abs=0.2), "2 s in the queue"
    assert first.run_w == pytest.approx(2 / 10 * gantt.CHART_W, abs=0.2), "2 s running"
    assert second.run_x + second.run_w == pytest.approx(gantt.LABEL_W + gantt.CHART_W, abs=0.2)
    assert gantt.chart([], T0).bars == [], "a run without tries draws nothing"


def test_conf_form_reads_back_typed_values_and_names_the_bad_field() -> None:
    params = {
        "rows": ParamSpec(default=5, type="integer"),
        "ratio": ParamSpec(default=0.5, type="number"),
        "dry": ParamSpec(default=False, type="boolean"),
        "ids": ParamSpec(default=[1], type="array"),
        "label": ParamSpec(default="x"),
    }
    kinds = {f.name: f.kind for f in conf_form.fields(params)}
    assert kinds == {
        "rows": "number",
        "ratio": "number",
        "dry": "checkbox",
        "ids": "json",
        "label": "text",
    }
    form = {"param.rows": "7", "param.ratio": "1.5", "param.ids": "[2, 3]", "param.label": ""}
    form["conf_json"] = '{"extra": true}'
    assert conf_form.conf_from_form(params, form, DEFAULT_LIMITS) == {
        "extra": True,
        "rows": 7,
        "ratio": 1.5,
        "dry": False,
        "ids": [2, 3],
    }
    with pytest.raises(ParamsError, match="param 'rows': expected an integer"):
        conf_form.conf_from_form(params, {"param.rows": "seven"}, DEFAULT_LIMITS)
    with pytest.raises(ParamsError, match="extra conf: must be a JSON object"):
        conf_form.conf_from_form(params, {"conf_json": "[1]"}, DEFAULT_LIMITS)


def test_a_big_log_file_comes_in_pages_of_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "try.log"
    line = "é" * 99 + "\n"  # 199 bytes
    path.write_text(line * 2000)  # ~400 KB: four pages
    first = logview.read_page(None, 1, path, "file", None)  # type: ignore[arg-type]
    assert first.more and first.text.endswith("\n") and len(first.text.encode()) <= 128 * 1024
    assert first.text.count("\n") == len(first.text.encode()) // 199, "whole lines only"
    pos, pages, text = first.pos, 1, first.text
    while True:
        following = logview.read_page(None, 1, path, "file", pos)  # type: ignore[arg-type]
        text, pos, pages = text + following.text, following.pos, pages + 1
        if not following.more:
            break
    assert text == line * 2000 and pages == 4, pages
    with path.open("ab") as handle:
        handle.write("half a line é".encode()[:-1])  # a line being written, cut mid-character
    tail = logview.read_page(None, 1, path, "file", pos)  # type: ignore[arg-type]
    assert tail.text == "half a line " and not tail.more, repr(tail.text)
