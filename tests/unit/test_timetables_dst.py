"""The DST policy, checked as exact UTC instants in three zones (both hemispheres).

2026 transitions used below:

    America/Los_Angeles  2026-03-08 02:00 PST -> 03:00 PDT (10:00Z)
                         2026-11-01 02:00 PDT -> 01:00 PST (09:00Z)
    Europe/Berlin        2026-03-29 02:00 CET -> 03:00 CEST (01:00Z)
                         2026-10-25 03:00 CEST -> 02:00 CET (01:00Z)
    Australia/Sydney     2026-04-05 03:00 AEDT -> 02:00 AEST (2026-04-04 16:00Z)
                         2026-10-04 02:00 AEST -> 03:00 AEDT (2026-10-03 16:00Z)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from drayman.timetables import dst_change, parse_schedule

LA, BERLIN, SYDNEY = "America/Los_Angeles", "Europe/Berlin", "Australia/Sydney"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def fires(schedule: str, zone: str, after: datetime, count: int) -> list[datetime]:
    """The next `count` run_after instants strictly after `after`."""
    return [run.run_after for run in parse_schedule(schedule, zone).upcoming(after, count)]


# --- a daily time inside the gap fires once, shifted by the jump -----------------------------


@pytest.mark.parametrize(
    ("zone", "after", "expected"),
    [
        # 02:30 does not exist on 2026-03-08: it runs at 02:30 PST = 10:30Z = 03:30 PDT
        (
            LA,
            utc(2026, 3, 7),
            [utc(2026, 3, 7, 10, 30), utc(2026, 3, 8, 10, 30), utc(2026, 3, 9, 9, 30)],
        ),
        # 02:30 CET = 01:30Z = 03:30 CEST
        (
            BERLIN,
            utc(2026, 3, 28),
            [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 30), utc(2026, 3, 30, 0, 30)],
        ),
        # 02:30 AEST = 16:30Z the day before = 03:30 AEDT
        (
            SYDNEY,
            utc(2026, 10, 2),
            [utc(2026, 10, 2, 16, 30), utc(2026, 10, 3, 16, 30), utc(2026, 10, 4, 15, 30)],
        ),
    ],
)
def test_daily_time_in_spring_gap(zone: str, after: datetime, expected: list[datetime]) -> None:
    assert fires("30 2 * * *", zone, after, 3) == expected
    local = expected[1].astimezone(ZoneInfo(zone))
    assert (local.hour, local.minute) == (3, 30)


def test_gap_day_interval_is_an_hour_shorter_in_wall_time_but_not_in_utc() -> None:
    """The run for 2026-03-07's data spans 24 h; the one for the DST day spans 23 h."""
    runs = parse_schedule("30 2 * * *", LA).upcoming(utc(2026, 3, 8), 2)
    assert runs[0].data_interval_start == utc(2026, 3, 7, 10, 30)
    assert runs[0].data_interval_end - runs[0].data_interval_start == timedelta(hours=24)
    assert runs[1].data_interval_end - runs[1].data_interval_start == timedelta(hours=23)


def test_daily_time_at_gap_start_and_just_after_the_gap() -> None:
    # 02:00 does not exist: it runs at 02:00 PST = 03:00 PDT
    assert fires("0 2 * * *", LA, utc(2026, 3, 8), 1) == [utc(2026, 3, 8, 10)]
    # 03:00 exists, as PDT
    assert fires("0 3 * * *", LA, utc(2026, 3, 8), 1) == [utc(2026, 3, 8, 10)]


# --- a daily time inside the overlap fires once, at its first occurrence ---------------------


@pytest.mark.parametrize(
    ("zone", "schedule", "after", "expected"),
    [
        # 01:30 happens twice on 2026-11-01: first as PDT (08:30Z), then as PST (09:30Z)
        (
            LA,
            "30 1 * * *",
            utc(2026, 10, 31),
            [utc(2026, 10, 31, 8, 30), utc(2026, 11, 1, 8, 30), utc(2026, 11, 2, 9, 30)],
        ),
        # 02:30 happens twice on 2026-10-25: CEST (00:30Z) then CET (01:30Z)
        (
            BERLIN,
            "30 2 * * *",
            utc(2026, 10, 24),
            [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)],
        ),
        # 02:30 happens twice on 2026-04-05: AEDT (15:30Z on the 4th) then AEST (16:30Z)
        (
            SYDNEY,
            "30 2 * * *",
            utc(2026, 4, 3),
            [utc(2026, 4, 3, 15, 30), utc(2026, 4, 4, 15, 30), utc(2026, 4, 5, 16, 30)],
        ),
    ],
)
def test_daily_time_in_autumn_overlap(
    zone: str, schedule: str, after: datetime, expected: list[datetime]
) -> None:
    assert fires(schedule, zone, after, 3) == expected


def test_overlap_day_interval_is_25_hours() -> None:
    runs = parse_schedule("30 1 * * *", LA).upcoming(utc(2026, 11, 1, 9), 1)
    assert runs[0].data_interval_start == utc(2026, 11, 1, 8, 30)
    assert runs[0].data_interval_end == utc(2026, 11, 2, 9, 30)


def test_restricted_hours_skip_the_second_occurrence() -> None:
    """'30 0-5' names its hours: 01:30 runs once, so 08:30Z -> 10:30Z is one interval."""
    assert fires("30 0-5 * * *", LA, utc(2026, 11, 1, 7), 3) == [
        utc(2026, 11, 1, 7, 30),  # 00:30 PDT
        utc(2026, 11, 1, 8, 30),  # 01:30 PDT
        utc(2026, 11, 1, 10, 30),  # 02:30 PST
    ]


# --- hourly crons keep an hourly rhythm across both changes ----------------------------------


@pytest.mark.parametrize(
    ("zone", "after", "expected_hours"),
    [
        # 01:00 PST, 02:00 PST (= 03:00 PDT, the same instant: once), 04:00 PDT
        (
            LA,
            utc(2026, 3, 8, 8, 30),
            [utc(2026, 3, 8, 9), utc(2026, 3, 8, 10), utc(2026, 3, 8, 11)],
        ),
        # 01:00 CET, 02:00 CET (= 03:00 CEST), 04:00 CEST
        (
            BERLIN,
            utc(2026, 3, 28, 23, 30),
            [utc(2026, 3, 29, 0), utc(2026, 3, 29, 1), utc(2026, 3, 29, 2)],
        ),
        # 01:00 AEST, 02:00 AEST (= 03:00 AEDT), 04:00 AEDT
        (
            SYDNEY,
            utc(2026, 10, 3, 14, 30),
            [utc(2026, 10, 3, 15), utc(2026, 10, 3, 16), utc(2026, 10, 3, 17)],
        ),
    ],
)
def test_hourly_across_spring_forward(
    zone: str, after: datetime, expected_hours: list[datetime]
) -> None:
    assert fires("0 * * * *", zone, after, 3) == expected_hours


@pytest.mark.parametrize(
    ("zone", "after", "expected_hours"),
    [
        # 00:00 PDT, 01:00 PDT, 01:00 PST, 02:00 PST
        (LA, utc(2026, 11, 1, 6, 30), [utc(2026, 11, 1, h) for h in (7, 8, 9, 10)]),
        # 01:00 CEST, 02:00 CEST, 02:00 CET, 03:00 CET
        (
            BERLIN,
            utc(2026, 10, 24, 22, 30),
            [utc(2026, 10, 24, 23), *(utc(2026, 10, 25, h) for h in (0, 1, 2))],
        ),
        # 01:00 AEDT, 02:00 AEDT, 02:00 AEST, 03:00 AEST
        (SYDNEY, utc(2026, 4, 4, 13, 30), [utc(2026, 4, 4, h) for h in (14, 15, 16, 17)]),
    ],
)
def test_hourly_across_fall_back_fires_every_hour(
    zone: str, after: datetime, expected_hours: list[datetime]
) -> None:
    assert fires("0 * * * *", zone, after, 4) == expected_hours


def test_quarter_hourly_through_the_repeated_hour() -> None:
    got = fires("*/15 * * * *", LA, utc(2026, 11, 1, 7, 50), 10)
    assert got == [utc(2026, 11, 1, 8) + timedelta(minutes=15 * i) for i in range(10)]


def test_quarter_hourly_through_the_gap() -> None:
    got = fires("*/15 * * * *", LA, utc(2026, 3, 8, 9, 40), 6)
    assert got == [utc(2026, 3, 8, 9, 45) + timedelta(minutes=15 * i) for i in range(6)]


def test_gap_shift_that_lands_after_a_real_time_is_ordered() -> None:
    """02:45 (gap) lands at 03:45 PDT; the real 03:00 PDT comes first, 03:45 PDT only once."""
    assert fires("0,45 2,3 * * *", LA, utc(2026, 3, 8, 9, 0), 3) == [
        utc(2026, 3, 8, 10, 0),
        utc(2026, 3, 8, 10, 45),
        utc(2026, 3, 9, 9, 0),
    ]


def test_gap_shift_is_found_from_after_the_jump() -> None:
    """At 03:10 PDT the shifted 02:30 (= 03:30 PDT) is still ahead."""
    assert fires("30 2 * * *", LA, utc(2026, 3, 8, 10, 10), 1) == [utc(2026, 3, 8, 10, 30)]


def test_walking_backwards_matches_walking_forwards_across_both_changes() -> None:
    timetable = parse_schedule("0,30 * * * *", BERLIN)
    for after in (utc(2026, 3, 28, 22), utc(2026, 10, 24, 22)):
        runs = timetable.upcoming(after, 12)
        ends = [run.run_after for run in runs]
        assert all(b - a == timedelta(minutes=30) for a, b in pairwise(ends))
        assert [run.data_interval_start for run in runs[1:]] == ends[:-1]


def test_lord_howe_half_hour_shift() -> None:
    """Australia/Lord_Howe moves by 30 minutes: 02:15 on 2026-10-04 does not exist."""
    assert fires("15 2 * * *", "Australia/Lord_Howe", utc(2026, 10, 3, 12), 1) == [
        utc(2026, 10, 3, 15, 45)  # 02:15 at +10:30 = 02:45 at +11:00
    ]


# --- interval schedules ignore DST -----------------------------------------------------------


def test_daily_interval_is_24_hours_of_absolute_time() -> None:
    timetable = parse_schedule(timedelta(days=1), LA)
    runs = timetable.upcoming(utc(2026, 3, 7, 9), 3, start_date=utc(2026, 3, 1, 8))
    assert [run.run_after for run in runs] == [
        utc(2026, 3, 8, 8),
        utc(2026, 3, 9, 8),
        utc(2026, 3, 10, 8),
    ]
    assert runs[-1].run_after.astimezone(ZoneInfo(LA)).hour == 1  # 00:00 PST became 01:00 PDT


# --- dst_change notes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "previous", "current", "note"),
    [
        (
            LA,
            utc(2026, 3, 7, 10, 30),
            utc(2026, 3, 8, 10, 30),
            "DST change: UTC-08:00 -> UTC-07:00",
        ),
        (
            LA,
            utc(2026, 10, 31, 8, 30),
            utc(2026, 11, 1, 9, 30),
            "DST change: UTC-07:00 -> UTC-08:00",
        ),
        (BERLIN, utc(2026, 3, 29, 0), utc(2026, 3, 29, 1), "DST change: UTC+01:00 -> UTC+02:00"),
        (SYDNEY, utc(2026, 4, 4, 15), utc(2026, 4, 4, 16), "DST change: UTC+11:00 -> UTC+10:00"),
        (
            "Australia/Lord_Howe",
            utc(2026, 4, 1),
            utc(2026, 4, 8),
            "DST change: UTC+11:00 -> UTC+10:30",
        ),
        (LA, utc(2026, 3, 8, 8), utc(2026, 3, 8, 9), None),
        ("UTC", utc(2026, 3, 1), utc(2026, 9, 1), None),
    ],
)
def test_dst_change(zone: str, previous: datetime, current: datetime, note: str | None) -> None:
    assert dst_change(previous, current, ZoneInfo(zone)) == note


def test_dst_change_without_previous_run_looks_back_24_hours() -> None:
    tz = ZoneInfo(LA)
    assert dst_change(None, utc(2026, 3, 8, 10, 30), tz) == "DST change: UTC-08:00 -> UTC-07:00"
    assert dst_change(None, utc(2026, 3, 9, 10, 30), tz) is None


def test_dst_change_accepts_any_aware_datetime() -> None:
    tz = ZoneInfo(BERLIN)
    previous = datetime(2026, 10, 24, 2, 30, tzinfo=tz)
    current = datetime(2026, 10, 26, 2, 30, tzinfo=tz)
    assert dst_change(previous, current, tz) == "DST change: UTC+02:00 -> UTC+01:00"


def test_dst_change_rejects_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="run_after must be timezone-aware"):
        dst_change(None, datetime(2026, 3, 8), ZoneInfo(LA))
    with pytest.raises(ValueError, match="previous_run_after must be timezone-aware"):
        dst_change(datetime(2026, 3, 7), utc(2026, 3, 8), ZoneInfo(LA))
