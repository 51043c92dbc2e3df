"""The grid: a DAG's latest runs (columns, oldest left) by its tasks (rows), one state per cell.

Pure: it takes the rows `store.pages` read and the DAG's spec, and returns what the template
draws and what the live-update endpoint sends. A mapped task is one row whose cell shows the
state that most needs attention among its elements (a failed element outweighs nine good ones).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from markupsafe import Markup

from drayman.spec import DagSpec

# most urgent first: the state a mapped task's cell shows
_URGENCY = (
    "failed",
    "upstream_failed",
    "up_for_retry",
    "running",
    "queued",
    "scheduled",
    "pending",
    "skipped",
    "success",
    "removed",
)


# One letter per state for the grid's cells: a 100-task grid of 50 runs has 5,000 cells, and
# the page must stay under 300 KB; the CSS colours `.grid .S` like `.s-success`.
STATE_CODES = {
    "success": "S",
    "failed": "F",
    "running": "R",
    "queued": "Q",
    "scheduled": "C",
    "pending": "P",
    "up_for_retry": "U",
    "upstream_failed": "X",
    "skipped": "K",
    "removed": "D",
}


def code(state: str) -> str:
    """The one-letter class of a state ("N" for one this version does not know)."""
    return STATE_CODES.get(state, "N")


@dataclass(frozen=True)
class Cell:
    state: str
    try_id: int | None  # the newest try, for the link; None before the first try
    elements: int  # 1, or how many elements a mapped task has


@dataclass(frozen=True)
class Column:
    pk: int
    run_id: str
    state: str
    run_type: str
    logical_date: datetime
    start_date: datetime | None
    end_date: datetime | None


@dataclass(frozen=True)
class Grid:
    columns: list[Column]  # oldest first, as time reads left to right
    task_ids: list[str]  # the DAG's tasks upstream first, then tasks only old runs had
    cells: dict[tuple[int, str], Cell]

    def cell(self, column: Column, task_id: str) -> Cell | None:
        return self.cells.get((column.pk, task_id))

    def row_html(self, task_id: str) -> Markup:
        """One task's cells, as the template would draw them, made here: 5,000 cells through
        Jinja calls cost a third of the page's time. Safe without escaping: a one-letter
        class from STATE_CODES and an integer try id are all that vary."""
        parts = []
        for column in self.columns:
            cell = self.cells.get((column.pk, task_id))
            if cell is None:
                parts.append("<i></i>")
            elif cell.try_id:
                parts.append(f"<a class={code(cell.state)} href=/tries/{int(cell.try_id)}></a>")
            else:
                parts.append(f"<i class={code(cell.state)}></i>")
        return Markup("".join(parts))

    @property
    def unfinished(self) -> bool:
        """Whether a column may still change: the page keeps polling while it is."""
        return any(c.state in ("queued", "running") for c in self.columns)


def task_order(spec: DagSpec | None) -> list[str]:
    """Task ids upstream first (a topological order), ties broken by definition order."""
    if spec is None:
        return []
    remaining = {t: set(task.upstream) & set(spec.tasks) for t, task in spec.tasks.items()}
    order: list[str] = []
    while remaining:
        ready = [t for t, ups in remaining.items() if not ups] or [next(iter(remaining))]
        for task_id in ready:
            order.append(task_id)
            del remaining[task_id]
        for ups in remaining.values():
            ups.difference_update(ready)
    return order


def build(runs_newest_first: Sequence[Any], tis: Iterable[Any], spec: DagSpec | None) -> Grid:
    """The grid of these runs (rows of `store.pages.latest_runs`) and their task instances."""
    columns = [
        Column(r.id, r.run_id, r.state, r.run_type, r.logical_date, r.start_date, r.end_date)
        for r in reversed(runs_newest_first)
    ]
    grouped: dict[tuple[int, str], list[Any]] = {}
    for ti in tis:
        grouped.setdefault((ti.dag_run_id, ti.task_id), []).append(ti)
    task_ids = task_order(spec)
    known = set(task_ids)
    extra = sorted({task_id for _, task_id in grouped} - known)
    cells = {key: _cell(rows) for key, rows in grouped.items()}
    return Grid(columns, task_ids + extra, cells)


def _cell(rows: list[Any]) -> Cell:
    live = [r for r in rows if r.state != "removed"] or rows
    state = min((r.state for r in live), key=_rank)
    chosen = next((r for r in live if r.state == state and r.try_id), None)
    chosen = chosen or next((r for r in live if r.try_id), None)
    elements = sum(1 for r in live if r.map_index >= 0) or 1
    return Cell(state, chosen.try_id if chosen else None, elements)


def _rank(state: str) -> int:
    return _URGENCY.index(state) if state in _URGENCY else len(_URGENCY)


def to_json(grid: Grid, link_run: Any, link_try: Any) -> dict[str, Any]:
    """What the live-update script redraws the grid from; links are made here, not in JS."""
    return {
        "tasks": grid.task_ids,
        "runs": [
            {
                "run_id": c.run_id,
                "state": c.state,
                "logical_date": c.logical_date.isoformat(),
                "url": link_run(c.run_id),
                "cells": [_cell_json(grid.cell(c, t), link_try) for t in grid.task_ids],
            }
            for c in grid.columns
        ],
        "unfinished": grid.unfinished,
    }


def _cell_json(cell: Cell | None, link_try: Any) -> dict[str, Any] | None:
    if cell is None:
        return None
    url = link_try(cell.try_id) if cell.try_id else None
    return {"state": cell.state, "code": code(cell.state), "url": url, "elements": cell.elements}
