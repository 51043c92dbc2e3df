"""The task-duration chart: how long each task took across the grid's runs, as inline SVG.

One line per task over the same runs the grid shows (never the whole history). With many tasks
only the slowest `MAX_LINES` are drawn, so a 100-task DAG's chart stays readable and small.
Pure: it takes the grid and returns coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from drayman.web.pages.grid import Grid

WIDTH = 760
HEIGHT = 200
LEFT = 56
BOTTOM = 20
MAX_LINES = 12
PALETTE = (
    "#2563eb",
    "#db2777",
    "#16a34a",
    "#ea580c",
    "#7c3aed",
    "#0891b2",
    "#ca8a04",
    "#dc2626",
    "#4b5563",
    "#65a30d",
    "#9333ea",
    "#0d9488",
)


@dataclass(frozen=True)
class Line:
    task_id: str
    colour: str
    points: str  # SVG polyline points
    dots: list[tuple[float, float]]  # a lone point, which a polyline would not show
    longest_s: float


@dataclass(frozen=True)
class Chart:
    lines: list[Line]
    max_s: float
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT


def chart(grid: Grid, tis: list[Any]) -> Chart:
    """Lines of the durations (start to end) of finished task instances, per task."""
    order = {c.pk: i for i, c in enumerate(grid.columns)}
    per_task: dict[str, dict[int, float]] = {}
    for ti in tis:
        seconds = _seconds(ti.start_date, ti.end_date)
        if seconds is None or ti.dag_run_id not in order:
            continue
        runs = per_task.setdefault(ti.task_id, {})
        column = order[ti.dag_run_id]
        runs[column] = max(runs.get(column, 0.0), seconds)  # a mapped task: its slowest element
    slowest = sorted(per_task, key=lambda t: max(per_task[t].values()), reverse=True)[:MAX_LINES]
    max_s = max((max(per_task[t].values()) for t in slowest), default=0.0) or 1.0
    step = (WIDTH - LEFT - 10) / max(len(grid.columns) - 1, 1)
    lines = []
    for i, task_id in enumerate(sorted(slowest)):
        values = sorted(per_task[task_id].items())
        dots = [
            (round(LEFT + column * step, 1), round((HEIGHT - BOTTOM) * (1 - s / max_s) + 4, 1))
            for column, s in values
        ]
        points = " ".join(f"{x},{y}" for x, y in dots)
        colour = PALETTE[i % len(PALETTE)]
        lone = dots if len(dots) == 1 else []
        lines.append(Line(task_id, colour, points, lone, max(s for _, s in values)))
    return Chart(lines, max_s)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)
