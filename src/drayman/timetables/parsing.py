"""Reading a DAG's ``schedule``: the string `DagSpec.schedule` stores, and its timetable."""

from __future__ import annotations

import math
from datetime import timedelta

from drayman.cron import PRESETS, CronExpression
from drayman.exceptions import ScheduleError
from drayman.timetables.kinds import (
    CronTimetable,
    IntervalTimetable,
    ManualTimetable,
    OnceTimetable,
    Timetable,
)
from drayman.timetables.zones import load_timezone

_INTERVAL_PREFIX = "interval:"
_ONCE = "@once"


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
