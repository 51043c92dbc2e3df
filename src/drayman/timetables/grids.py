"""Fire points: the instants a schedule fires at, in UTC, found before or after any instant.

A cron grid reads its expression in a zone's wall-clock time under the DST policy described in
`drayman.timetables`; an interval grid is absolute time laid from an anchor, which DST does not
touch. Everything else a timetable answers is derived from a grid (`drayman.timetables.runs`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from drayman.cron import CronExpression
from drayman.timetables.zones import utc_offset, wall_time

# Larger than any DST jump in use today (Antarctica/Troll: 2 h); see `CronGrid`.
_REACH = timedelta(hours=3)


class Grid(Protocol):
    """The fire points of a schedule, in UTC."""

    def after(self, instant: datetime) -> datetime | None:
        """The first fire point strictly after `instant`."""
        ...

    def before(self, instant: datetime) -> datetime | None:
        """The last fire point strictly before `instant`."""
        ...


@dataclass(frozen=True)
class CronGrid:
    """A cron expression's fire instants in a zone, per the DST policy in `drayman.timetables`.

    Wall time maps to instants monotonically except within an offset change, where a
    shifted gap time or a repeated hour can come out of order. So: take the next matching
    wall time; if the UTC offset is the same a few hours either side of `instant` and of that
    candidate, it is the answer (the common case, one lookup). Otherwise scan matching wall
    times from a few hours before to a few hours after and keep the nearest instant.
    """

    cron: CronExpression
    tz: ZoneInfo

    def after(self, instant: datetime) -> datetime | None:
        return self._nearest(instant, forward=True)

    def before(self, instant: datetime) -> datetime | None:
        return self._nearest(instant, forward=False)

    def _nearest(self, instant: datetime, *, forward: bool) -> datetime | None:
        step = self.cron.next_wall if forward else self.cron.prev_wall
        reach = _REACH if forward else -_REACH
        try:
            wall = step(wall_time(instant, self.tz))
            if wall is None:
                return None
            guess = self._instants(wall)[0]
            probes = (instant - reach, instant, guess, guess + reach)
            offsets = {utc_offset(probe, self.tz) for probe in probes}
            if len(offsets) == 1 and _beyond(guess, instant, forward=forward):
                return guess
            widened = _REACH + (max(offsets) - min(offsets))
            return self._scan(instant, forward=forward, reach=widened)
        except OverflowError:
            return None

    def _scan(self, instant: datetime, *, forward: bool, reach: timedelta) -> datetime | None:
        """The nearest fire instant beyond `instant`, trying wall times `reach` either side."""
        step = self.cron.next_wall if forward else self.cron.prev_wall
        signed = reach if forward else -reach
        wall = step(wall_time(instant, self.tz) - signed)
        best: datetime | None = None
        while wall is not None:
            if best is not None and _beyond(
                wall, wall_time(best, self.tz) + signed, forward=forward
            ):
                break
            for candidate in self._instants(wall):
                if _beyond(candidate, instant, forward=forward) and (
                    best is None or _beyond(best, candidate, forward=forward)
                ):
                    best = candidate
            wall = step(wall)
        return best

    def _instants(self, wall: datetime) -> tuple[datetime, ...]:
        """The instants a matching wall time fires at: fold=0, plus fold=1 for every-hour crons.

        fold=0 turns a gap time into the instant it has at the pre-jump offset and a repeated
        time into its first occurrence. fold=1 of a repeated time is its second occurrence (for
        a gap time fold=1 lands *before* fold=0, and is ignored).
        """
        first = wall.replace(tzinfo=self.tz).astimezone(UTC)
        if not self.cron.every_hour:
            return (first,)
        second = wall.replace(tzinfo=self.tz, fold=1).astimezone(UTC)
        return (first, second) if second > first else (first,)


def _beyond(value: datetime, mark: datetime, *, forward: bool) -> bool:
    """`value` is strictly past `mark` in the direction of travel."""
    return value > mark if forward else value < mark


@dataclass(frozen=True)
class IntervalGrid:
    """Fire points ``anchor + k * step`` for every integer k: absolute time, no DST."""

    anchor: datetime
    step: timedelta

    def after(self, instant: datetime) -> datetime | None:
        try:
            return self.anchor + ((instant - self.anchor) // self.step + 1) * self.step
        except OverflowError:
            return None

    def before(self, instant: datetime) -> datetime | None:
        try:
            return self.anchor - ((self.anchor - instant) // self.step + 1) * self.step
        except OverflowError:
            return None


GridFor = Callable[[datetime | None], Grid | None]
"""Builds a schedule's grid from an anchor; interval grids need one, cron grids ignore it."""
