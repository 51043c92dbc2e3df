"""Cron expressions: parsing five cron fields, matching wall-clock minutes, walking to the
next or previous matching minute.

A `CronExpression` knows nothing of timezones or instants: it answers questions about naive
wall-clock minutes. Mapping those to instants in a DAG's timezone, daylight saving time
included, is the timetables' job (`drayman.timetables.grids`).

The syntax is crontab(5)'s: ``*``, numbers, ranges ``1-5``, steps ``*/15`` and ``5/15``,
lists ``1,15``, month and weekday names (``jan``, ``mon``), 7 as Sunday again, and the
presets in `PRESETS`. Day-of-month and day-of-week combine as crontab(5) says (see
`CronExpression`). A wrong field is a ScheduleError that names the field and says why.
"""

from __future__ import annotations

import bisect
import calendar
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from drayman.exceptions import ScheduleError

__all__ = ["PRESETS", "CronExpression"]

PRESETS: dict[str, str] = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}

_TICK = timedelta(microseconds=1)
_MINUTE = timedelta(minutes=1)
_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)
# How far a cron search looks before giving up. Every cron that `CronExpression.parse` accepts
# fires within it: the rarest, such as '0 0 29 2 */7' (29 February on a Sunday), recur every 28
# years, or 40 across a non-leap century year such as 2100.
_SEARCH_YEARS = 50


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
        """True when the hour field covers all 24 hours.

        Such a cron keeps its rhythm through a repeated hour (see the DST policy in
        `drayman.timetables`).
        """
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
