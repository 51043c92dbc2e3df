"""Data intervals: `RunInfo`, and the runs a grid of fire points yields.

Each run covers the data between two consecutive fire points (see `drayman.timetables`). The
functions here are the rules every grid-based timetable shares: where the first interval
starts, how catchup skips ahead, and walking consecutive intervals for backfills and previews.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from drayman.timetables.grids import Grid, GridFor
from drayman.timetables.zones import maybe_utc, to_utc

_TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class RunInfo:
    """One scheduled run: the data interval it covers and when it may be created."""

    logical_date: datetime  # aware UTC, = data_interval_start
    data_interval_start: datetime  # aware UTC
    data_interval_end: datetime  # aware UTC
    run_after: datetime  # aware UTC: earliest moment the run may be created

    def __post_init__(self) -> None:
        for name in ("logical_date", "data_interval_start", "data_interval_end", "run_after"):
            to_utc(getattr(self, name), name)


def interval_run(start: datetime, end: datetime) -> RunInfo:
    """The run covering [start, end], created once `end` has passed."""
    return RunInfo(
        logical_date=start, data_interval_start=start, data_interval_end=end, run_after=end
    )


def _align(grid: Grid, instant: datetime) -> datetime | None:
    """The first fire point at or after `instant`."""
    return grid.after(instant - _TICK)


def _run_from(grid: Grid, start: datetime) -> RunInfo | None:
    end = grid.after(start)
    return None if end is None else interval_run(start, end)


def _latest_complete_start(grid: Grid, now: datetime) -> datetime | None:
    """The start of the last interval whose end (run_after) is at or before `now`."""
    end = grid.before(now + _TICK)
    return None if end is None else grid.before(end)


def _later(first: datetime | None, second: datetime | None) -> datetime | None:
    if first is None or second is None:
        return first or second
    return max(first, second)


def next_run(
    grid_for: GridFor,
    last: RunInfo | None,
    start_date: datetime | None,
    end_date: datetime | None,
    catchup: bool,
    now: datetime,
) -> RunInfo | None:
    """Airflow's rule: continue after `last`, never before start_date, skip ahead without catchup.

    `last.data_interval_end` is re-aligned to the grid, so a run recorded under an older
    schedule still leads to a run of the current one.
    """
    start_date, end_date = maybe_utc(start_date, "start_date"), maybe_utc(end_date, "end_date")
    now = to_utc(now, "now")
    grid = grid_for(start_date)
    if grid is None:
        return None
    start = None if start_date is None else _align(grid, start_date)
    if last is not None:
        aligned = _align(grid, to_utc(last.data_interval_end, "last.data_interval_end"))
        if aligned is None:
            return None
        start = _later(start, aligned)
    if not catchup:
        start = _later(start, _latest_complete_start(grid, now))
    if start is None or (end_date is not None and start > end_date):
        return None
    return _run_from(grid, start)


def runs_between(
    grid_for: GridFor, start: datetime, end: datetime, start_date: datetime | None
) -> list[RunInfo]:
    start, end = to_utc(start, "start"), to_utc(end, "end")
    start_date = maybe_utc(start_date, "start_date")
    grid = grid_for(start_date or start)
    if grid is None:
        return []
    first = _align(grid, start)
    if start_date is not None:
        first = _later(first, _align(grid, start_date))
    return _runs_from(grid, first, end, None)


def upcoming(
    grid_for: GridFor,
    after: datetime,
    count: int,
    start_date: datetime | None,
    end_date: datetime | None,
) -> list[RunInfo]:
    after = to_utc(after, "after")
    start_date, end_date = maybe_utc(start_date, "start_date"), maybe_utc(end_date, "end_date")
    grid = grid_for(start_date)
    if grid is None or count <= 0:
        return []
    first = _first_upcoming_start(grid, after)
    if start_date is not None:
        first = _later(first, _align(grid, start_date))
    return _runs_from(grid, first, end_date, count)


def _runs_from(
    grid: Grid, start: datetime | None, until: datetime | None, count: int | None
) -> list[RunInfo]:
    """Consecutive runs from the interval starting at `start`, while logical_date <= until."""
    runs: list[RunInfo] = []
    while start is not None and (count is None or len(runs) < count):
        if until is not None and start > until:
            break
        run = _run_from(grid, start)
        if run is None:
            break
        runs.append(run)
        start = run.data_interval_end
    return runs


def _first_upcoming_start(grid: Grid, after: datetime) -> datetime | None:
    """The start of the first interval whose end is strictly after `after`."""
    end = grid.after(after)
    return None if end is None else grid.before(end)
