"""Timezones for timetables: IANA names, UTC conversion, wall-clock time, DST notes.

Every datetime a timetable is given must be timezone-aware (a naive one is a programming error,
``ValueError``); `to_utc` is where that is checked.
"""

from __future__ import annotations

import difflib
import zoneinfo
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from drayman.exceptions import TimezoneError

_DAY = timedelta(days=1)


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
    current = to_utc(run_after, "run_after")
    if previous_run_after is None:
        previous = current - _DAY
    else:
        previous = to_utc(previous_run_after, "previous_run_after")
    before, after = utc_offset(previous, tz), utc_offset(current, tz)
    if before == after:
        return None
    return f"DST change: {_format_offset(before)} -> {_format_offset(after)}"


def _format_offset(offset: timedelta) -> str:
    sign = "-" if offset < timedelta(0) else "+"
    minutes, seconds = divmod(int(abs(offset).total_seconds()), 60)
    hours, minutes = divmod(minutes, 60)
    text = f"UTC{sign}{hours:02d}:{minutes:02d}"
    return f"{text}:{seconds:02d}" if seconds else text


def to_utc(value: datetime, name: str) -> datetime:
    """`value` in UTC; naive datetimes are a caller bug, not user input."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


def utc_offset(instant: datetime, tz: ZoneInfo) -> timedelta:
    return instant.astimezone(tz).utcoffset() or timedelta(0)


def wall_time(instant: datetime, tz: ZoneInfo) -> datetime:
    """The naive local wall-clock time of `instant` in `tz`."""
    return instant.astimezone(tz).replace(tzinfo=None)


def maybe_utc(value: datetime | None, name: str) -> datetime | None:
    return None if value is None else to_utc(value, name)
