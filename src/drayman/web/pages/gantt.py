"""The Gantt chart of one run: a row per try, the wait in the queue and the run time drawn apart.

A retried task has one row per try (labelled "try 2", "try 3"), so retries show as rows, not
as one bar that hides the failures. The queued part (queued_at to start) is a thin hatched bar,
the run part (start to end) a full bar coloured by the try's state; an unfinished try is drawn
up to `now`. Pure: coordinates only, the template draws them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

LABEL_W = 230
CHART_W = 760
ROW_H = 22
TOP = 24  # room for the time axis
TICKS = 6


@dataclass(frozen=True)
class Bar:
    label: str
    title: str  # tooltip: the full label and the times
    try_id: int
    state: str
    y: int
    queued_x: float
    queued_w: float
    run_x: float
    run_w: float  # 0 when the try never started


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    ticks: list[Tick]
    width: int
    height: int
    label_w: int = LABEL_W
    row_h: int = ROW_H


def chart(tries: Iterable[Any], now: datetime) -> Chart:
    """The chart of these tries (rows of `try_history.tries_of_run`; rows without a try skip)."""
    rows = [t for t in tries if t.try_number is not None and t.queued_at is not None]
    if not rows:
        return Chart([], [], LABEL_W + CHART_W, TOP)
    start = min(t.queued_at for t in rows)
    end = max(_end(t, now) for t in rows)
    span = max((end - start).total_seconds(), 1e-3)

    def x(moment: datetime) -> float:
        return round(LABEL_W + (moment - start).total_seconds() / span * CHART_W, 1)

    bars = []
    for i, t in enumerate(sorted(rows, key=lambda r: (r.queued_at, r.id))):
        began = t.start_date
        finished = _end(t, now)
        queued_end = began or finished
        bars.append(
            Bar(
                label=_label(t),
                title=_title(t, now),
                try_id=t.id,
                state=t.state,
                y=TOP + i * ROW_H,
                queued_x=x(t.queued_at),
                queued_w=max(round(x(queued_end) - x(t.queued_at), 1), 0.0),
                run_x=x(began) if began else 0.0,
                run_w=max(round(x(finished) - x(began), 1), 1.0) if began else 0.0,
            )
        )
    ticks = [
        Tick(LABEL_W + CHART_W * i / TICKS, _offset(span * i / TICKS)) for i in range(TICKS + 1)
    ]
    return Chart(bars, ticks, LABEL_W + CHART_W + 40, TOP + len(bars) * ROW_H + 4)


def _end(t: Any, now: datetime) -> datetime:
    return t.end_date or now


def _label(t: Any) -> str:
    name = t.task_id if t.map_index < 0 else f"{t.task_id}[{t.map_index}]"
    if len(name) > 26:
        name = name[:25] + "…"
    return f"{name} · try {t.try_number}" if t.try_number > 1 else name


def _title(t: Any, now: datetime) -> str:
    name = t.task_id if t.map_index < 0 else f"{t.task_id}[{t.map_index}]"
    waited = ((t.start_date or _end(t, now)) - t.queued_at).total_seconds()
    ran = (_end(t, now) - t.start_date).total_seconds() if t.start_date else 0.0
    return f"{name} try {t.try_number}: {t.state}; queued {waited:.2f}s, ran {ran:.2f}s"


def _offset(seconds: float) -> str:
    """An axis label: +1.5s, +2m05s, +1h02m."""
    if seconds < 60:
        return f"+{seconds:.1f}s" if seconds < 10 else f"+{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"+{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"+{hours}h{minutes:02d}m"
