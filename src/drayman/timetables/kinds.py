"""The four kinds of timetable: cron, interval, manual and once, behind one `Timetable` protocol.

Cron and interval timetables answer every question from their grid of fire points
(`drayman.timetables.grids`); manual and once timetables need none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from drayman.cron import CronExpression
from drayman.timetables import runs
from drayman.timetables.grids import CronGrid, Grid, IntervalGrid
from drayman.timetables.runs import RunInfo, interval_run
from drayman.timetables.zones import maybe_utc, to_utc


class Timetable(Protocol):
    """What the scheduler, the CLI and the web UI need from a schedule."""

    @property
    def timezone(self) -> ZoneInfo:
        """The zone cron fields are read in (and DST notes are about)."""
        ...

    def next_run(
        self,
        last: RunInfo | None,
        *,
        start_date: datetime | None,
        end_date: datetime | None,
        catchup: bool,
        now: datetime,
    ) -> RunInfo | None:
        """The run after `last` (None: the first run), or None when there is none.

        With ``catchup=False`` it skips to the latest interval whose run_after <= now when
        that is later. A run whose logical_date is after `end_date` is not returned.
        """
        ...

    def runs_between(
        self, start: datetime, end: datetime, *, start_date: datetime | None = None
    ) -> list[RunInfo]:
        """Every run whose logical_date is in [start, end] (for ``dags backfill``).

        `start_date` (the DAG's) anchors interval schedules and drops runs before it; without
        it an interval grid is anchored at `start`.
        """
        ...

    def upcoming(
        self,
        after: datetime,
        count: int,
        *,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
    ) -> list[RunInfo]:
        """The next `count` runs with run_after strictly after `after` (``dags next-runs``)."""
        ...

    def describe(self) -> str:
        """One line for humans, e.g. "cron '0 3 * * *' in America/Los_Angeles"."""
        ...


class _GridTimetable:
    """What cron and interval timetables share: every question is answered from their grid
    of fire times; a subclass only says what its grid is (`_grid`) and how to describe it."""

    def next_run(
        self,
        last: RunInfo | None,
        *,
        start_date: datetime | None,
        end_date: datetime | None,
        catchup: bool,
        now: datetime,
    ) -> RunInfo | None:
        return runs.next_run(self._grid, last, start_date, end_date, catchup, now)

    def runs_between(
        self, start: datetime, end: datetime, *, start_date: datetime | None = None
    ) -> list[RunInfo]:
        return runs.runs_between(self._grid, start, end, start_date)

    def upcoming(
        self,
        after: datetime,
        count: int,
        *,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
    ) -> list[RunInfo]:
        return runs.upcoming(self._grid, after, count, start_date, end_date)

    def _grid(self, anchor: datetime | None) -> Grid | None:
        raise NotImplementedError  # every subclass defines its grid


@dataclass(frozen=True)
class CronTimetable(_GridTimetable):
    """A cron expression read in local wall-clock time of `timezone`."""

    cron: CronExpression
    timezone: ZoneInfo
    preset: str | None = None  # "@daily" when written that way

    def describe(self) -> str:
        written = f" ({self.preset})" if self.preset else ""
        return f"cron '{self.cron.text}'{written} in {self.timezone.key}"

    def _grid(self, anchor: datetime | None) -> Grid:
        return CronGrid(self.cron, self.timezone)


@dataclass(frozen=True)
class IntervalTimetable(_GridTimetable):
    """Every `interval` of absolute time from the DAG's start_date (DST does not apply)."""

    interval: timedelta
    timezone: ZoneInfo

    def describe(self) -> str:
        return (
            f"every {_human_duration(self.interval)} from the DAG's start_date "
            f"(never runs without one)"
        )

    def _grid(self, anchor: datetime | None) -> Grid | None:
        """The grid through `anchor` (the DAG's start_date, or a backfill's start)."""
        return None if anchor is None else IntervalGrid(anchor, self.interval)


def _human_duration(duration: timedelta) -> str:
    """'1d 2h 30m', '45s', '0.5s': compact and exact."""
    seconds = duration.total_seconds()
    if not seconds.is_integer():
        return f"{seconds:g}s"
    parts = []
    remaining = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, remaining = divmod(remaining, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return " ".join(parts)


@dataclass(frozen=True)
class ManualTimetable:
    """No schedule: runs only when triggered by hand or API."""

    timezone: ZoneInfo

    def next_run(
        self,
        last: RunInfo | None,
        *,
        start_date: datetime | None,
        end_date: datetime | None,
        catchup: bool,
        now: datetime,
    ) -> RunInfo | None:
        return None

    def runs_between(
        self, start: datetime, end: datetime, *, start_date: datetime | None = None
    ) -> list[RunInfo]:
        return []

    def upcoming(
        self,
        after: datetime,
        count: int,
        *,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
    ) -> list[RunInfo]:
        return []

    def describe(self) -> str:
        return "manual only (no schedule)"


@dataclass(frozen=True)
class OnceTimetable:
    """``@once``: a single run at start_date, with the empty interval [start_date, start_date]."""

    timezone: ZoneInfo

    def next_run(
        self,
        last: RunInfo | None,
        *,
        start_date: datetime | None,
        end_date: datetime | None,
        catchup: bool,
        now: datetime,
    ) -> RunInfo | None:
        runs = self._only(start_date, end_date)
        return runs[0] if runs and last is None else None

    def runs_between(
        self, start: datetime, end: datetime, *, start_date: datetime | None = None
    ) -> list[RunInfo]:
        start, end = to_utc(start, "start"), to_utc(end, "end")
        return [run for run in self._only(start_date, None) if start <= run.logical_date <= end]

    def upcoming(
        self,
        after: datetime,
        count: int,
        *,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
    ) -> list[RunInfo]:
        after = to_utc(after, "after")
        runs = self._only(start_date, end_date)
        return [run for run in runs if run.run_after > after][: max(count, 0)]

    def describe(self) -> str:
        return "once, at the DAG's start_date"

    def _only(self, start_date: datetime | None, end_date: datetime | None) -> list[RunInfo]:
        start = maybe_utc(start_date, "start_date")
        end = maybe_utc(end_date, "end_date")
        if start is None or (end is not None and start > end):
            return []
        return [interval_run(start, start)]
