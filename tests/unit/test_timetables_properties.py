"""Properties of cron timetables over random expressions and zones (hypothesis).

1. For any valid cron, any zone and any moment, `upcoming()` returns contiguous intervals whose
   instants strictly increase, and each fire instant's local wall time matches the cron, except
   a wall time in a spring-forward gap, which fires at the pre-jump offset (documented policy).
2. Around real DST transitions, the fire instants equal a brute-force, minute-by-minute
   enumeration of the documented policy.
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import pairwise
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from drayman.exceptions import ScheduleError
from drayman.timetables import CronExpression, CronTimetable

PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@cache
def all_zones() -> list[str]:
    return sorted(zoneinfo.available_timezones())


def field(low: int, high: int) -> st.SearchStrategy[str]:
    """One cron field over [low, high]: '*', '*/n', 'a', 'a-b', 'a-b/n' or a short list."""
    number = st.integers(low, high)
    step = st.integers(1, max(1, (high - low) // 2))
    single = st.one_of(
        number.map(str),
        st.tuples(number, number).map(lambda ab: f"{min(ab)}-{max(ab)}"),
        st.tuples(number, number, step).map(lambda abn: f"{min(abn[:2])}-{max(abn[:2])}/{abn[2]}"),
    )
    return st.one_of(
        st.just("*"),
        step.map(lambda n: f"*/{n}"),
        single,
        st.lists(single, min_size=2, max_size=3).map(",".join),
    )


CRONS = st.tuples(field(0, 59), field(0, 23), field(1, 31), field(1, 12), field(0, 7)).map(" ".join)
# Dense crons, so that a 30-hour window around a transition holds many fire points.
DENSE_CRONS = st.tuples(
    st.sampled_from(["0", "30", "*/15", "0,45", "*/20", "10-50/20"]),
    st.sampled_from(["*", "*/2", "1-4", "0,2,3", "2", "1", "3", "*/3"]),
).map(lambda mh: f"{mh[0]} {mh[1]} * * *")
MOMENTS = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2037, 12, 31)).map(
    lambda naive: naive.replace(tzinfo=UTC)
)


def parse_or_skip(expression: str) -> CronExpression:
    try:
        return CronExpression.parse(expression)
    except ScheduleError:  # e.g. '0 0 31 2 *': rejected by design
        assume(False)
        raise


def fires_by_policy(cron: CronExpression, tz: ZoneInfo, instant: datetime) -> bool:
    """The DST policy written out directly, for one UTC minute."""
    local = instant.astimezone(tz)
    wall = local.replace(tzinfo=None)
    if cron.matches(wall) and (local.fold == 0 or cron.every_hour):
        return True
    return shifted_gap_wall(cron, tz, instant) is not None


def shifted_gap_wall(cron: CronExpression, tz: ZoneInfo, instant: datetime) -> datetime | None:
    """A matching wall time that does not exist and so fires at `instant` (pre-jump offset)."""
    for hours_before in (1, 2, 3):
        before = instant - timedelta(hours=hours_before)
        offset = before.astimezone(tz).utcoffset()
        assert offset is not None
        wall = (instant + offset).replace(tzinfo=None)
        if not cron.matches(wall):
            continue
        exists = wall.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None)
        if exists != wall and wall.replace(tzinfo=tz).astimezone(UTC) == instant:
            return wall
    return None


@PROPERTY_SETTINGS
@given(expression=CRONS, zone=st.sampled_from(all_zones()), after=MOMENTS)
def test_upcoming_is_increasing_contiguous_and_matches_the_fields(
    expression: str, zone: str, after: datetime
) -> None:
    cron = parse_or_skip(expression)
    tz = ZoneInfo(zone)
    runs = CronTimetable(cron, tz).upcoming(after, 5)
    assert len(runs) == 5
    assert runs[0].data_interval_start <= after < runs[0].run_after
    for earlier, later in pairwise(runs):
        assert earlier.run_after == later.data_interval_start
    for run in runs:
        assert run.logical_date == run.data_interval_start < run.data_interval_end == run.run_after
        assert run.run_after.tzinfo is UTC
        local = run.run_after.astimezone(tz)
        wall = local.replace(tzinfo=None)
        matches = cron.matches(wall) and (local.fold == 0 or cron.every_hour)
        assert matches or shifted_gap_wall(cron, tz, run.run_after) is not None


TRANSITIONS = [
    ("America/Los_Angeles", datetime(2026, 3, 8, 10, tzinfo=UTC)),
    ("America/Los_Angeles", datetime(2026, 11, 1, 9, tzinfo=UTC)),
    ("Europe/Berlin", datetime(2026, 3, 29, 1, tzinfo=UTC)),
    ("Europe/Berlin", datetime(2026, 10, 25, 1, tzinfo=UTC)),
    ("Australia/Sydney", datetime(2026, 4, 4, 16, tzinfo=UTC)),
    ("Australia/Sydney", datetime(2026, 10, 3, 16, tzinfo=UTC)),
    ("Australia/Lord_Howe", datetime(2026, 10, 3, 15, 30, tzinfo=UTC)),
    ("America/Santiago", datetime(2026, 9, 6, 4, tzinfo=UTC)),
    ("Europe/Dublin", datetime(2026, 10, 25, 1, tzinfo=UTC)),  # "negative DST" in tzdata
]


@PROPERTY_SETTINGS
@given(
    expression=DENSE_CRONS,
    transition=st.sampled_from(TRANSITIONS),
    lead=st.integers(0, 12 * 60),
)
def test_matches_brute_force_around_transitions(
    expression: str, transition: tuple[str, datetime], lead: int
) -> None:
    zone, moment = transition
    cron = CronExpression.parse(expression)
    tz = ZoneInfo(zone)
    start = moment - timedelta(minutes=lead)
    window = [start + timedelta(minutes=m) for m in range(16 * 60)]
    expected = [instant for instant in window if fires_by_policy(cron, tz, instant)]
    timetable = CronTimetable(cron, tz)
    upcoming = timetable.upcoming(start - timedelta(seconds=1), len(expected) + 1)
    assert [run.run_after for run in upcoming][: len(expected)] == expected
    backfill = timetable.runs_between(start, window[-1])
    assert [run.logical_date for run in backfill] == expected
    # each interval's start is found by searching backwards from its end
    for previous, current in pairwise(expected):
        assert timetable.upcoming(current - timedelta(seconds=1), 1)[0].logical_date == previous
