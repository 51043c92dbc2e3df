"""When a DAG runs: cron, interval, manual and once schedules in an IANA timezone.

A timetable turns a DAG's ``schedule`` and ``timezone`` into runs. It is pure: it takes
datetimes (and ``now``) and returns `RunInfo`s, so the scheduler, the CLI and the tests can
drive it with any clock. Every datetime going in must be timezone-aware (a naive one is a
programming error: ``ValueError``); every datetime coming out is in UTC.

Data intervals (Airflow 2's ``CronDataIntervalTimetable``)
-----------------------------------------------------------
A schedule defines *fire points*. Each run covers the data between two consecutive points::

    data_interval_start = logical_date = previous fire point
    data_interval_end   = run_after    = this fire point

so the ``0 3 * * *`` run holding 2026-01-01's data is created at 2026-01-02 03:00 local time.
The first interval starts at the first fire point at or after ``start_date``.
``catchup=False`` creates only the most recent complete interval (``run_after <= now``) and
then continues normally; ``catchup=True`` creates every interval since the last one.

Interval schedules (``interval:<seconds>`` or a ``timedelta``) are absolute durations laid on
a grid anchored at ``start_date``: daylight saving time does not touch them. Without a
``start_date`` they never run. ``None`` means manual (never scheduled); ``@once`` is a single
run at ``start_date``.

DST policy for cron schedules
-----------------------------
Cron fields are matched against local wall-clock time in the DAG's timezone.

* A wall time that does not exist (spring forward: 02:30 on 2026-03-08 in
  America/Los_Angeles) fires once, at the instant it would have had with the offset in force
  before the jump (zoneinfo ``fold=0``): 02:30 PST = 10:30 UTC = 03:30 PDT. When such a shifted
  time lands on an instant that also fires normally (an hourly cron's 02:00 -> 03:00 PDT, the
  same instant as 03:00 PDT itself), it fires once: fire instants strictly increase.
* A wall time that happens twice (fall back: 01:30 on 2026-11-01 in America/Los_Angeles) fires
  once, at its first occurrence (``fold=0``: 01:30 PDT = 08:30 UTC), when the cron names
  particular hours (daily, ``0 */2 * * *``, ...).
* Exception, as in Vixie cron and Airflow: a cron whose hour field covers every hour
  (``0 * * * *``, ``*/15 * * * *``) keeps its rhythm through the repeated hour, firing at both
  occurrences. Otherwise an "hourly" DAG would get a two-hour interval once a year.

Fire instants are defined as a set (every matching wall time mapped by the rules above) and a
timetable walks that set in instant order; see `_CronGrid` for how that stays fast.
"""

from __future__ import annotations

import bisect
import calendar
import difflib
import math
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from drayman.exceptions import ScheduleError, TimezoneError

__all__ = [
    "PRESETS",
    "CronExpression",
    "CronTimetable",
    "IntervalTimetable",
    "ManualTimetable",
    "OnceTimetable",
    "RunInfo",
    "Timetable",
    "dst_change",
    "load_timezone",
    "parse_schedule",
    "schedule_to_string",
]

_TICK = timedelta(microseconds=1)
_MINUTE = timedelta(minutes=1)
_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)
# Larger than any DST jump in use today (Antarctica/Troll: 2 h); see `_CronGrid`.
_REACH = timedelta(hours=3)
# How far a cron search looks before giving up. Every cron that `CronExpression.parse` accepts
# fires within it: the rarest, such as '0 0 29 2 */7' (29 February on a Sunday), recur every 28
# years, or 40 across a non-leap century year such as 2100.
_SEARCH_YEARS = 50
_INTERVAL_PREFIX = "interval:"

PRESETS: dict[str, str] = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_ONCE = "@once"


# --- timezones -------------------------------------------------------------------------------


def load_timezone(name: str) -> ZoneInfo:
    """The IANA zone `name`, or a TimezoneError that suggests the closest real name."""
    try:
        return ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        pass
    known = {key.lower(): key for key in zoneinfo.available_timezones()}
    close = difflib.get_close_matches(name.lower(), list(known), n=1)
    if close:
        raise TimezoneError(f"unknown timezone '{name}' (did you mean '{known[close[0]]}'?)")
    raise TimezoneError(
        f"unknown timezone '{name}': use an IANA name such as 'UTC' or 'Europe/Berlin'"
    )


def zone_name_of(value: datetime, what: str) -> str:
    """The IANA name of aware `value`'s timezone, for a DAG that names none (as in Airflow).

    A named zone keeps its name, so its daylight saving time (zoneinfo's ``key``, pytz's
    ``zone``, pendulum's ``name``); a zero offset is UTC. A fixed non-zero offset is refused:
    it is no place's clock, and a schedule read on it ignores the DST of the place meant.
    """
    zone = value.tzinfo
    for attribute in ("key", "zone", "name"):
        name = getattr(zone, attribute, None)
        if isinstance(name, str) and _is_zone_name(name):
            return name
    fixed = zone.utcoffset(None) if zone is not None else None
    if fixed == timedelta(0):
        return "UTC"
    shown = value.isoformat()
    if fixed is None:
        raise TimezoneError(
            f"{what} {shown} has a timezone without an IANA name ({zone!r}): set "
            "timezone= to the DAG's IANA timezone, e.g. timezone='Europe/Berlin'"
        )
    hint = ""
    hours, rest = divmod(fixed, timedelta(hours=1))
    if not rest:
        hint = f", or timezone='Etc/GMT{-hours:+d}' if you really mean a fixed UTC offset"
    raise TimezoneError(
        f"{what} {shown} has a fixed UTC offset, which ignores daylight saving time: set "
        f"timezone= to the DAG's IANA timezone, e.g. timezone='Europe/Berlin'{hint}"
    )


def _is_zone_name(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def dst_change(
    previous_run_after: datetime | None, run_after: datetime, tz: ZoneInfo
) -> str | None:
    """A note when `tz`'s UTC offset differs between the previous run and this one.

    Without a previous run, compares with 24 hours before `run_after`. Meant for the run's
    log and the UI, where an interval an hour shorter or longer than usual needs explaining.
    """
    current = _utc(run_after, "run_after")
    if previous_run_after is None:
        previous = current - _DAY
    else:
        previous = _utc(previous_run_after, "previous_run_after")
    before, after = _offset(previous, tz), _offset(current, tz)
    if before == after:
        return None
    return f"DST change: {_format_offset(before)} -> {_format_offset(after)}"


def _format_offset(offset: timedelta) -> str:
    sign = "-" if offset < timedelta(0) else "+"
    minutes, seconds = divmod(int(abs(offset).total_seconds()), 60)
    hours, minutes = divmod(minutes, 60)
    text = f"UTC{sign}{hours:02d}:{minutes:02d}"
    return f"{text}:{seconds:02d}" if seconds else text


def _utc(value: datetime, name: str) -> datetime:
    """`value` in UTC; naive datetimes are a caller bug, not user input."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


def _offset(instant: datetime, tz: ZoneInfo) -> timedelta:
    return instant.astimezone(tz).utcoffset() or timedelta(0)


def _wall(instant: datetime, tz: ZoneInfo) -> datetime:
    """The naive local wall-clock time of `instant` in `tz`."""
    return instant.astimezone(tz).replace(tzinfo=None)


# --- cron expressions ------------------------------------------------------------------------


@dataclass(frozen=True)
class _FieldSpec:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names[i] stands for the value low + i

    def value(self, token: str) -> int:
        if token.isascii() and token.isdigit():
            number = int(token)
        elif token.lower() in self.names:
            number = self.low + self.names.index(token.lower())
        else:
            spelled = f" or a name ({self.names[0]}-{self.names[-1]})" if self.names else ""
            raise ValueError(f"'{token}' is not a number{spelled}")
        if not self.low <= number <= self.high:
            raise ValueError(f"{number} is out of range {self.low}-{self.high}")
        return number


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_FIELDS = (
    _FieldSpec("minute", 0, 59),
    _FieldSpec("hour", 0, 23),
    _FieldSpec("day-of-month", 1, 31),
    _FieldSpec("month", 1, 12, _MONTHS),
    _FieldSpec("day-of-week", 0, 7, _WEEKDAYS),  # 7 is Sunday again
)
_LONGEST_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _parse_field(text: str, spec: _FieldSpec) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        values |= _parse_item(item, spec)
    return frozenset(values)


def _parse_item(item: str, spec: _FieldSpec) -> set[int]:
    """One list item: ``*``, ``5``, ``1-5``, or any of them with ``/step``."""
    body, slash, step_text = item.partition("/")
    step = _parse_step(step_text) if slash else 1
    if body == "*":
        low, high = spec.low, spec.high
    elif "-" in body:
        first, _, last = body.partition("-")
        low, high = spec.value(first), spec.value(last)
        if low > high:
            raise ValueError(f"range '{body}' runs backwards")
    elif body:
        low = spec.value(body)
        high = spec.high if slash else low  # "5/15" means "5-max/15", as in croniter
    else:
        raise ValueError(f"'{item}' needs a value before '/'" if item else "empty list item")
    return set(range(low, high + 1, step))


def _parse_step(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"step '{text}' is not a number")
    if int(text) < 1:
        raise ValueError(f"step {text} must be at least 1")
    return int(text)


def _first_at_least(values: tuple[int, ...], floor: int) -> int | None:
    index = bisect.bisect_left(values, floor)
    return values[index] if index < len(values) else None


def _last_at_most(values: tuple[int, ...], ceiling: int) -> int | None:
    index = bisect.bisect_right(values, ceiling)
    return values[index - 1] if index else None


def _midnight(wall: datetime) -> datetime:
    return wall.replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class CronExpression:
    """A parsed 5-field cron expression, matched against naive wall-clock minutes.

    Day-of-month and day-of-week follow crontab(5): when both are restricted (neither starts
    with ``*``), a day matches when *either* matches; otherwise both must match.
    """

    text: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: tuple[int, ...]
    weekdays: frozenset[int]  # 0 = Sunday ... 6 = Saturday
    day_or: bool

    @classmethod
    def parse(cls, text: str) -> CronExpression:
        """Parse `text`; a ScheduleError names the field that is wrong and why."""
        parts = text.split()
        if len(parts) != 5:
            raise ScheduleError(
                f"bad schedule '{text}': expected 5 cron fields (minute hour day-of-month month "
                f"day-of-week), a preset such as @daily, 'interval:<seconds>' or None; "
                f"got {len(parts)} field{'s' if len(parts) != 1 else ''}"
            )
        sets = [
            _parse_named_field(text, part, spec) for part, spec in zip(parts, _FIELDS, strict=True)
        ]
        cron = cls(
            text=" ".join(parts),
            minutes=tuple(sorted(sets[0])),
            hours=tuple(sorted(sets[1])),
            days=sets[2],
            months=tuple(sorted(sets[3])),
            weekdays=frozenset(day % 7 for day in sets[4]),
            day_or=not parts[2].startswith("*") and not parts[4].startswith("*"),
        )
        cron._check_satisfiable()
        return cron

    def _check_satisfiable(self) -> None:
        """Reject '0 0 30 2 *' now rather than searching forever for a 30 February."""
        if self.day_or or min(self.days) <= max(_LONGEST_MONTH[m - 1] for m in self.months):
            return
        raise ScheduleError(
            f"bad schedule '{self.text}': day-of-month field: no selected day exists in the "
            f"selected months, so it would never run"
        )

    @property
    def every_hour(self) -> bool:
        """True when the hour field covers all 24 hours (see the DST policy above)."""
        return len(self.hours) == 24

    def day_matches(self, day: date) -> bool:
        in_month = day.day in self.days
        in_week = day.isoweekday() % 7 in self.weekdays
        return in_month or in_week if self.day_or else in_month and in_week

    def matches(self, wall: datetime) -> bool:
        """Whether the wall-clock minute `wall` (naive) is one of this expression's."""
        return (
            wall.minute in self.minutes
            and wall.hour in self.hours
            and wall.month in self.months
            and self.day_matches(wall.date())
        )

    def next_wall(self, after: datetime) -> datetime | None:
        """The first matching wall-clock minute strictly after `after` (naive)."""
        try:
            start = after.replace(second=0, microsecond=0) + _MINUTE
        except OverflowError:
            return None
        return _walk(start, self._advance)

    def prev_wall(self, before: datetime) -> datetime | None:
        """The last matching wall-clock minute strictly before `before` (naive)."""
        try:
            start = (before - _TICK).replace(second=0, microsecond=0)
        except OverflowError:
            return None
        return _walk(start, self._retreat)

    def _advance(self, wall: datetime) -> datetime:
        """`wall` if it matches, else the next minute that could."""
        if wall.month not in self.months:
            later = _first_at_least(self.months, wall.month + 1)
            if later is None:
                return datetime(wall.year + 1, self.months[0], 1)
            return datetime(wall.year, later, 1)
        if not self.day_matches(wall.date()):
            return _midnight(wall) + _DAY
        hour = _first_at_least(self.hours, wall.hour)
        if hour is None:
            return _midnight(wall) + _DAY
        if hour > wall.hour:
            return wall.replace(hour=hour, minute=0)
        minute = _first_at_least(self.minutes, wall.minute)
        if minute is None:
            return wall.replace(minute=0) + _HOUR
        return wall.replace(minute=minute)

    def _retreat(self, wall: datetime) -> datetime:
        """`wall` if it matches, else the previous minute that could."""
        if wall.month not in self.months:
            earlier = _last_at_most(self.months, wall.month - 1)
            year = wall.year if earlier is not None else wall.year - 1
            month = earlier if earlier is not None else self.months[-1]
            return datetime(year, month, calendar.monthrange(year, month)[1], 23, 59)
        if not self.day_matches(wall.date()):
            return _midnight(wall) - _MINUTE
        hour = _last_at_most(self.hours, wall.hour)
        if hour is None:
            return _midnight(wall) - _MINUTE
        if hour < wall.hour:
            return wall.replace(hour=hour, minute=59)
        minute = _last_at_most(self.minutes, wall.minute)
        if minute is None:
            return wall.replace(minute=0) - _MINUTE
        return wall.replace(minute=minute)


def _walk(start: datetime, move: Callable[[datetime], datetime]) -> datetime | None:
    """Apply `move` until it stops moving: field by field, never minute by minute."""
    current = start
    try:
        while abs(current.year - start.year) <= _SEARCH_YEARS:
            moved = move(current)
            if moved == current:
                return current
            current = moved
    except (OverflowError, ValueError):  # past year 1 or 9999
        pass
    return None


def _parse_named_field(text: str, part: str, spec: _FieldSpec) -> frozenset[int]:
    try:
        return _parse_field(part, spec)
    except ValueError as exc:
        raise ScheduleError(f"bad schedule '{text}': {spec.name} field: {exc}") from None


# --- fire points -----------------------------------------------------------------------------


class _Grid(Protocol):
    """The fire points of a schedule, in UTC."""

    def after(self, instant: datetime) -> datetime | None:
        """The first fire point strictly after `instant`."""
        ...

    def before(self, instant: datetime) -> datetime | None:
        """The last fire point strictly before `instant`."""
        ...


@dataclass(frozen=True)
class _CronGrid:
    """A cron expression's fire instants in a zone, per the module's DST policy.

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
            wall = step(_wall(instant, self.tz))
            if wall is None:
                return None
            guess = self._instants(wall)[0]
            probes = (instant - reach, instant, guess, guess + reach)
            offsets = {_offset(probe, self.tz) for probe in probes}
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
        wall = step(_wall(instant, self.tz) - signed)
        best: datetime | None = None
        while wall is not None:
            if best is not None and _beyond(wall, _wall(best, self.tz) + signed, forward=forward):
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
class _IntervalGrid:
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


_GridFor = Callable[[datetime | None], _Grid | None]
"""Builds a schedule's grid from an anchor; interval grids need one, cron grids ignore it."""


# --- runs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunInfo:
    """One scheduled run: the data interval it covers and when it may be created."""

    logical_date: datetime  # aware UTC, = data_interval_start
    data_interval_start: datetime  # aware UTC
    data_interval_end: datetime  # aware UTC
    run_after: datetime  # aware UTC: earliest moment the run may be created

    def __post_init__(self) -> None:
        for name in ("logical_date", "data_interval_start", "data_interval_end", "run_after"):
            _utc(getattr(self, name), name)


def _run(start: datetime, end: datetime) -> RunInfo:
    return RunInfo(
        logical_date=start, data_interval_start=start, data_interval_end=end, run_after=end
    )


def _align(grid: _Grid, instant: datetime) -> datetime | None:
    """The first fire point at or after `instant`."""
    return grid.after(instant - _TICK)


def _run_from(grid: _Grid, start: datetime) -> RunInfo | None:
    end = grid.after(start)
    return None if end is None else _run(start, end)


def _latest_complete_start(grid: _Grid, now: datetime) -> datetime | None:
    """The start of the last interval whose end (run_after) is at or before `now`."""
    end = grid.before(now + _TICK)
    return None if end is None else grid.before(end)


def _later(first: datetime | None, second: datetime | None) -> datetime | None:
    if first is None or second is None:
        return first or second
    return max(first, second)


def _next_run(
    grid_for: _GridFor,
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
    start_date, end_date = _maybe_utc(start_date, "start_date"), _maybe_utc(end_date, "end_date")
    now = _utc(now, "now")
    grid = grid_for(start_date)
    if grid is None:
        return None
    start = None if start_date is None else _align(grid, start_date)
    if last is not None:
        aligned = _align(grid, _utc(last.data_interval_end, "last.data_interval_end"))
        if aligned is None:
            return None
        start = _later(start, aligned)
    if not catchup:
        start = _later(start, _latest_complete_start(grid, now))
    if start is None or (end_date is not None and start > end_date):
        return None
    return _run_from(grid, start)


def _runs_between(
    grid_for: _GridFor, start: datetime, end: datetime, start_date: datetime | None
) -> list[RunInfo]:
    start, end = _utc(start, "start"), _utc(end, "end")
    start_date = _maybe_utc(start_date, "start_date")
    grid = grid_for(start_date or start)
    if grid is None:
        return []
    first = _align(grid, start)
    if start_date is not None:
        first = _later(first, _align(grid, start_date))
    return _runs_from(grid, first, end, None)


def _upcoming(
    grid_for: _GridFor,
    after: datetime,
    count: int,
    start_date: datetime | None,
    end_date: datetime | None,
) -> list[RunInfo]:
    after = _utc(after, "after")
    start_date, end_date = _maybe_utc(start_date, "start_date"), _maybe_utc(end_date, "end_date")
    grid = grid_for(start_date)
    if grid is None or count <= 0:
        return []
    first = _first_upcoming_start(grid, after)
    if start_date is not None:
        first = _later(first, _align(grid, start_date))
    return _runs_from(grid, first, end_date, count)


def _runs_from(
    grid: _Grid, start: datetime | None, until: datetime | None, count: int | None
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


def _first_upcoming_start(grid: _Grid, after: datetime) -> datetime | None:
    """The start of the first interval whose end is strictly after `after`."""
    end = grid.after(after)
    return None if end is None else grid.before(end)


def _maybe_utc(value: datetime | None, name: str) -> datetime | None:
    return None if value is None else _utc(value, name)


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
        return _next_run(self._grid, last, start_date, end_date, catchup, now)

    def runs_between(
        self, start: datetime, end: datetime, *, start_date: datetime | None = None
    ) -> list[RunInfo]:
        return _runs_between(self._grid, start, end, start_date)

    def upcoming(
        self,
        after: datetime,
        count: int,
        *,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
    ) -> list[RunInfo]:
        return _upcoming(self._grid, after, count, start_date, end_date)

    def _grid(self, anchor: datetime | None) -> _Grid | None:
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

    def _grid(self, anchor: datetime | None) -> _Grid:
        return _CronGrid(self.cron, self.timezone)


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

    def _grid(self, anchor: datetime | None) -> _Grid | None:
        """The grid through `anchor` (the DAG's start_date, or a backfill's start)."""
        return None if anchor is None else _IntervalGrid(anchor, self.interval)


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
        start, end = _utc(start, "start"), _utc(end, "end")
        return [run for run in self._only(start_date, None) if start <= run.logical_date <= end]

    def upcoming(
        self,
        after: datetime,
        count: int,
        *,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
    ) -> list[RunInfo]:
        after = _utc(after, "after")
        runs = self._only(start_date, end_date)
        return [run for run in runs if run.run_after > after][: max(count, 0)]

    def describe(self) -> str:
        return "once, at the DAG's start_date"

    def _only(self, start_date: datetime | None, end_date: datetime | None) -> list[RunInfo]:
        start = _maybe_utc(start_date, "start_date")
        end = _maybe_utc(end_date, "end_date")
        if start is None or (end is not None and start > end):
            return []
        return [_run(start, start)]


# --- parsing schedules -----------------------------------------------------------------------


def schedule_to_string(schedule: str | timedelta | None) -> str | None:
    """The form `DagSpec.schedule` stores: whitespace collapsed, timedelta -> 'interval:<s>'.

    Only normalises; `parse_schedule` validates. A non-positive timedelta or a value of another
    type is rejected here already, since it has no string form.
    """
    if schedule is None:
        return None
    if isinstance(schedule, timedelta):
        if schedule <= timedelta(0):
            raise ScheduleError(f"bad schedule {schedule!r}: the interval must be positive")
        return _INTERVAL_PREFIX + _seconds_text(schedule)
    if isinstance(schedule, str):
        return " ".join(schedule.split())
    raise ScheduleError(
        f"bad schedule {schedule!r}: expected a cron string, a preset such as '@daily', "
        f"a datetime.timedelta or None, got {type(schedule).__name__}"
    )


def _seconds_text(duration: timedelta) -> str:
    """Exact seconds: '3600', '0.25'."""
    whole = duration.days * 86400 + duration.seconds
    if not duration.microseconds:
        return str(whole)
    return f"{whole}.{duration.microseconds:06d}".rstrip("0")


def parse_schedule(schedule: str | timedelta | None, timezone: str) -> Timetable:
    """The timetable for a DAG's `schedule` in the IANA zone `timezone`.

    None -> manual; a timedelta or 'interval:<seconds>' -> interval; '@once'; a preset
    (@hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually); or 5 cron fields.
    """
    tz = load_timezone(timezone)
    text = schedule_to_string(schedule)
    if text is None:
        return ManualTimetable(tz)
    if text.startswith(_INTERVAL_PREFIX):
        return IntervalTimetable(_parse_interval(text), tz)
    lowered = text.lower()
    if lowered == _ONCE:
        return OnceTimetable(tz)
    if lowered in PRESETS:
        return CronTimetable(CronExpression.parse(PRESETS[lowered]), tz, preset=lowered)
    if text.startswith("@"):
        known = ", ".join([*PRESETS, _ONCE])
        raise ScheduleError(f"bad schedule '{text}': unknown preset; known presets: {known}")
    return CronTimetable(CronExpression.parse(text), tz)


def _parse_interval(text: str) -> timedelta:
    raw = text[len(_INTERVAL_PREFIX) :].strip()
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ScheduleError(
            f"bad schedule '{text}': the interval must be a positive number of seconds, "
            f"e.g. 'interval:3600'"
        )
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ScheduleError(f"bad schedule '{text}': the interval is too long") from None
