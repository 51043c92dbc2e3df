"""Timetables: parsing schedules, data intervals, catchup, end dates, backfill and next-runs.

DST cases live in test_timetables_dst.py, cron syntax in test_cron.py and the
hypothesis properties in test_timetables_properties.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

import drayman.timetables as timetables
from drayman.exceptions import ScheduleError, TimezoneError
from drayman.timetables import (
    CronTimetable,
    IntervalTimetable,
    ManualTimetable,
    OnceTimetable,
    RunInfo,
    Timetable,
    load_timezone,
    parse_schedule,
    schedule_to_string,
)

LA = "America/Los_Angeles"
LA_TZ = ZoneInfo(LA)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def la(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=LA_TZ)


def interval(start: datetime, end: datetime) -> RunInfo:
    return RunInfo(start, start, end, end)


def test_public_names() -> None:
    assert sorted(timetables.__all__) == sorted(
        [
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
    )


# --- timezones -------------------------------------------------------------------------------


def test_load_timezone() -> None:
    assert load_timezone(LA) == LA_TZ
    assert load_timezone("UTC").key == "UTC"


def test_unknown_timezone_suggests_the_closest_name() -> None:
    with pytest.raises(TimezoneError) as caught:
        load_timezone("America/Los_Angelos")
    assert str(caught.value) == (
        "unknown timezone 'America/Los_Angelos' (did you mean 'America/Los_Angeles'?)"
    )


def test_timezone_suggestion_ignores_case() -> None:
    with pytest.raises(TimezoneError, match=r"did you mean 'Europe/Berlin'\?"):
        load_timezone("europe/berlin")


@pytest.mark.parametrize(("name", "suggestion"), [("Berlin", "Europe/Berlin"), ("utc", "UTC")])
def test_timezone_suggestions(name: str, suggestion: str) -> None:
    with pytest.raises(TimezoneError, match=f"did you mean '{suggestion}'"):
        load_timezone(name)


@pytest.mark.parametrize("name", ["", "Nowhere/Atall/Zzz", "../etc/passwd"])
def test_unknown_timezone_without_suggestion_says_what_to_use(name: str) -> None:
    with pytest.raises(TimezoneError) as caught:
        load_timezone(name)
    assert str(caught.value) == (
        f"unknown timezone '{name}': use an IANA name such as 'UTC' or 'Europe/Berlin'"
    )


@pytest.mark.parametrize("name", ["America", "/etc/localtime"])
def test_directories_and_paths_are_not_timezones(name: str) -> None:
    with pytest.raises(TimezoneError, match="unknown timezone"):
        load_timezone(name)


def test_parse_schedule_checks_the_timezone() -> None:
    with pytest.raises(TimezoneError, match="did you mean 'Europe/Paris'"):
        parse_schedule("@daily", "Europe/Pariss")


# --- parse_schedule / schedule_to_string -----------------------------------------------------


def test_parse_schedule_kinds() -> None:
    assert isinstance(parse_schedule(None, "UTC"), ManualTimetable)
    assert isinstance(parse_schedule("@once", "UTC"), OnceTimetable)
    assert isinstance(parse_schedule("0 3 * * *", LA), CronTimetable)
    assert parse_schedule(timedelta(hours=1), "UTC") == IntervalTimetable(
        timedelta(hours=1), ZoneInfo("UTC")
    )
    assert parse_schedule("interval:3600", "UTC") == parse_schedule(timedelta(hours=1), "UTC")
    assert parse_schedule("interval:0.25", "UTC") == IntervalTimetable(
        timedelta(milliseconds=250), ZoneInfo("UTC")
    )


def test_presets_are_crons() -> None:
    daily = parse_schedule("@DAILY", LA)
    assert isinstance(daily, CronTimetable)
    assert daily.cron.text == "0 0 * * *"
    assert daily.timezone == LA_TZ


def test_every_timetable_satisfies_the_protocol() -> None:
    kinds: list[Timetable] = [
        parse_schedule(schedule, LA)
        for schedule in (None, "@once", "@hourly", "*/5 * * * *", "interval:60")
    ]
    assert all(kind.timezone == LA_TZ for kind in kinds)


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("61 * * * *", "bad schedule '61 * * * *': minute field: 61 is out of range 0-59"),
        ("@fortnightly", "bad schedule '@fortnightly': unknown preset; known presets: @hourly"),
        ("@reboot", "unknown preset"),
        ("interval:", "bad schedule 'interval:': the interval must be a positive number"),
        ("interval:abc", "the interval must be a positive number of seconds"),
        ("interval:0", "the interval must be a positive number of seconds"),
        ("interval:-60", "the interval must be a positive number of seconds"),
        ("interval:nan", "the interval must be a positive number of seconds"),
        ("interval:inf", "the interval must be a positive number of seconds"),
        ("interval:1e300", "the interval is too long"),
        ("daily", "expected 5 cron fields"),
    ],
)
def test_bad_schedules(schedule: str, message: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(schedule, "UTC")
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (None, None),
        ("  0  3 * *   * ", "0 3 * * *"),
        ("@daily", "@daily"),
        (timedelta(hours=1), "interval:3600"),
        (timedelta(days=2, seconds=5), "interval:172805"),
        (timedelta(milliseconds=250), "interval:0.25"),
        (timedelta(seconds=1, microseconds=1), "interval:1.000001"),
    ],
)
def test_schedule_to_string(schedule: str | timedelta | None, expected: str | None) -> None:
    assert schedule_to_string(schedule) == expected


@pytest.mark.parametrize(
    "duration", [timedelta(hours=1), timedelta(microseconds=7), timedelta(days=400, seconds=3)]
)
def test_interval_string_round_trips(duration: timedelta) -> None:
    text = schedule_to_string(duration)
    assert parse_schedule(text, "UTC") == IntervalTimetable(duration, ZoneInfo("UTC"))


@pytest.mark.parametrize("schedule", [timedelta(0), timedelta(seconds=-1)])
def test_non_positive_interval_is_rejected(schedule: timedelta) -> None:
    with pytest.raises(ScheduleError, match="the interval must be positive"):
        schedule_to_string(schedule)


def test_schedule_of_the_wrong_type_is_rejected() -> None:
    with pytest.raises(ScheduleError, match="got int"):
        schedule_to_string(3600)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("schedule", "description"),
    [
        ("0 3 * * *", "cron '0 3 * * *' in America/Los_Angeles"),
        ("@daily", "cron '0 0 * * *' (@daily) in America/Los_Angeles"),
        (None, "manual only (no schedule)"),
        ("@once", "once, at the DAG's start_date"),
        ("interval:5400", "every 1h 30m from the DAG's start_date (never runs without one)"),
        ("interval:90061", "every 1d 1h 1m 1s from the DAG's start_date (never runs without one)"),
        ("interval:0.5", "every 0.5s from the DAG's start_date (never runs without one)"),
    ],
)
def test_describe(schedule: str | None, description: str) -> None:
    assert parse_schedule(schedule, LA).describe() == description


# --- RunInfo and naive datetimes -------------------------------------------------------------


def test_run_info_rejects_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="run_after must be timezone-aware"):
        RunInfo(utc(2026, 1, 1), utc(2026, 1, 1), utc(2026, 1, 2), datetime(2026, 1, 2))


@pytest.mark.parametrize("schedule", ["0 3 * * *", "interval:3600", "@once"])
def test_naive_datetimes_are_a_programming_error(schedule: str) -> None:
    timetable = parse_schedule(schedule, LA)
    naive = datetime(2026, 1, 1)
    with pytest.raises(ValueError, match="start_date must be timezone-aware"):
        timetable.next_run(None, start_date=naive, end_date=None, catchup=True, now=utc(2026, 1, 1))
    with pytest.raises(ValueError, match="after must be timezone-aware"):
        timetable.upcoming(naive, 3, start_date=utc(2026, 1, 1))
    with pytest.raises(ValueError, match="start must be timezone-aware"):
        timetable.runs_between(naive, utc(2026, 1, 2), start_date=utc(2026, 1, 1))


# --- cron: data intervals and next_run -------------------------------------------------------

DAILY_3AM = parse_schedule("0 3 * * *", LA)
START = la(2026, 1, 1)


def test_first_run_covers_the_first_day_and_is_created_the_next_morning() -> None:
    run = DAILY_3AM.next_run(
        None, start_date=START, end_date=None, catchup=True, now=utc(2026, 6, 1)
    )
    assert run == interval(utc(2026, 1, 1, 11), utc(2026, 1, 2, 11))  # 03:00 PST
    assert run is not None
    assert run.run_after.astimezone(LA_TZ) == la(2026, 1, 2, 3)
    assert all(value.tzinfo is UTC for value in vars(run).values())


def test_start_date_on_a_fire_point_is_the_first_logical_date() -> None:
    run = DAILY_3AM.next_run(
        None, start_date=la(2026, 1, 1, 3), end_date=None, catchup=True, now=utc(2026, 6, 1)
    )
    assert run is not None
    assert run.logical_date == utc(2026, 1, 1, 11)


def test_catchup_walks_every_interval() -> None:
    now = utc(2026, 6, 1)
    first = DAILY_3AM.next_run(None, start_date=START, end_date=None, catchup=True, now=now)
    second = DAILY_3AM.next_run(first, start_date=START, end_date=None, catchup=True, now=now)
    assert second == interval(utc(2026, 1, 2, 11), utc(2026, 1, 3, 11))


def test_no_catchup_starts_with_the_latest_complete_interval() -> None:
    now = utc(2026, 2, 10, 12)  # 04:00 PST: the interval ending 03:00 today is complete
    run = DAILY_3AM.next_run(None, start_date=START, end_date=None, catchup=False, now=now)
    assert run == interval(utc(2026, 2, 9, 11), utc(2026, 2, 10, 11))


def test_no_catchup_skips_forward_from_an_old_last_run() -> None:
    old = interval(utc(2026, 1, 4, 11), utc(2026, 1, 5, 11))
    now = utc(2026, 2, 10, 12)
    run = DAILY_3AM.next_run(old, start_date=START, end_date=None, catchup=False, now=now)
    assert run == interval(utc(2026, 2, 9, 11), utc(2026, 2, 10, 11))


def test_no_catchup_continues_normally_from_a_recent_last_run() -> None:
    last = interval(utc(2026, 2, 9, 11), utc(2026, 2, 10, 11))
    now = utc(2026, 2, 10, 12)
    run = DAILY_3AM.next_run(last, start_date=START, end_date=None, catchup=False, now=now)
    assert run == interval(utc(2026, 2, 10, 11), utc(2026, 2, 11, 11))  # run_after is ahead


def test_no_catchup_when_now_is_exactly_a_fire_point() -> None:
    run = DAILY_3AM.next_run(
        None, start_date=START, end_date=None, catchup=False, now=utc(2026, 2, 10, 11)
    )
    assert run == interval(utc(2026, 2, 9, 11), utc(2026, 2, 10, 11))


def test_no_catchup_before_start_date_waits_for_start_date() -> None:
    run = DAILY_3AM.next_run(
        None, start_date=START, end_date=None, catchup=False, now=utc(2025, 6, 1)
    )
    assert run == interval(utc(2026, 1, 1, 11), utc(2026, 1, 2, 11))


def test_no_start_date() -> None:
    now = utc(2026, 2, 10, 12)
    assert DAILY_3AM.next_run(None, start_date=None, end_date=None, catchup=True, now=now) is None
    latest = DAILY_3AM.next_run(None, start_date=None, end_date=None, catchup=False, now=now)
    assert latest == interval(utc(2026, 2, 9, 11), utc(2026, 2, 10, 11))


def test_end_date_is_the_last_logical_date() -> None:
    last = interval(utc(2026, 1, 9, 11), utc(2026, 1, 10, 11))
    now = utc(2026, 6, 1)
    on_end = DAILY_3AM.next_run(
        last, start_date=START, end_date=utc(2026, 1, 10, 11), catchup=True, now=now
    )
    assert on_end == interval(utc(2026, 1, 10, 11), utc(2026, 1, 11, 11))
    assert (
        DAILY_3AM.next_run(
            on_end, start_date=START, end_date=utc(2026, 1, 10, 11), catchup=True, now=now
        )
        is None
    )


def test_end_date_in_the_past_stops_no_catchup_too() -> None:
    run = DAILY_3AM.next_run(
        None, start_date=START, end_date=la(2026, 1, 31), catchup=False, now=utc(2026, 6, 1)
    )
    assert run is None


def test_last_run_off_the_grid_is_realigned() -> None:
    """A run made under an older schedule (here: ending 05:00) continues at the next 03:00."""
    last = interval(utc(2026, 1, 9, 13), utc(2026, 1, 10, 13))
    run = DAILY_3AM.next_run(
        last, start_date=START, end_date=None, catchup=True, now=utc(2026, 6, 1)
    )
    assert run == interval(utc(2026, 1, 11, 11), utc(2026, 1, 12, 11))


def test_start_date_later_than_the_last_run_wins() -> None:
    last = interval(utc(2026, 1, 9, 11), utc(2026, 1, 10, 11))
    run = DAILY_3AM.next_run(
        last, start_date=la(2026, 3, 1), end_date=None, catchup=True, now=utc(2026, 6, 1)
    )
    assert run is not None
    assert run.logical_date == utc(2026, 3, 1, 11)


# --- cron: runs_between and upcoming ---------------------------------------------------------


def test_runs_between_includes_both_ends() -> None:
    timetable = parse_schedule("@daily", "UTC")
    runs = timetable.runs_between(utc(2026, 1, 1), utc(2026, 1, 3))
    assert [run.logical_date for run in runs] == [utc(2026, 1, 1), utc(2026, 1, 2), utc(2026, 1, 3)]
    assert runs[-1].data_interval_end == utc(2026, 1, 4)


def test_runs_between_starts_at_the_first_fire_point() -> None:
    timetable = parse_schedule("0 */6 * * *", "UTC")
    runs = timetable.runs_between(utc(2026, 1, 1, 1), utc(2026, 1, 1, 18, 30))
    assert [run.logical_date.hour for run in runs] == [6, 12, 18]


def test_runs_between_respects_start_date() -> None:
    timetable = parse_schedule("@daily", "UTC")
    runs = timetable.runs_between(utc(2026, 1, 1), utc(2026, 1, 5), start_date=utc(2026, 1, 3, 12))
    assert [run.logical_date.day for run in runs] == [4, 5]


def test_runs_between_empty_range() -> None:
    assert parse_schedule("@daily", "UTC").runs_between(utc(2026, 1, 2), utc(2026, 1, 1)) == []


def test_upcoming_is_strictly_after() -> None:
    timetable = parse_schedule("@daily", "UTC")
    runs = timetable.upcoming(utc(2026, 1, 2), 2)
    assert runs == [
        interval(utc(2026, 1, 2), utc(2026, 1, 3)),
        interval(utc(2026, 1, 3), utc(2026, 1, 4)),
    ]


def test_upcoming_waits_for_start_date_and_stops_at_end_date() -> None:
    timetable = parse_schedule("@daily", "UTC")
    runs = timetable.upcoming(
        utc(2026, 1, 1), 10, start_date=utc(2026, 3, 1), end_date=utc(2026, 3, 3)
    )
    assert [run.logical_date.day for run in runs] == [1, 2, 3]


def test_upcoming_nothing_asked() -> None:
    assert parse_schedule("@daily", "UTC").upcoming(utc(2026, 1, 1), 0) == []


def test_upcoming_for_a_weekly_schedule_in_a_zone() -> None:
    runs = parse_schedule("0 9 * * mon", "Europe/Berlin").upcoming(la(2026, 3, 20), 3)
    assert [run.run_after for run in runs] == [
        utc(2026, 3, 23, 8),  # 09:00 CET
        utc(2026, 3, 30, 7),  # 09:00 CEST
        utc(2026, 4, 6, 7),
    ]
    assert runs[0].data_interval_start == utc(2026, 3, 16, 8)


def test_inputs_in_other_zones_come_back_in_utc() -> None:
    runs = parse_schedule("@hourly", "Asia/Kolkata").upcoming(la(2026, 1, 1), 1)
    assert runs[0].run_after == utc(2026, 1, 1, 8, 30)  # 14:00 IST
    assert runs[0].run_after.tzinfo is UTC


# --- interval --------------------------------------------------------------------------------

HOURLY = parse_schedule("interval:3600", LA)
ANCHOR = utc(2026, 1, 1, 0, 15)


def test_interval_first_run_starts_at_start_date() -> None:
    run = HOURLY.next_run(None, start_date=ANCHOR, end_date=None, catchup=True, now=utc(2026, 6, 1))
    assert run == interval(ANCHOR, utc(2026, 1, 1, 1, 15))


def test_interval_catchup_and_no_catchup() -> None:
    now = utc(2026, 1, 1, 5)
    last = interval(ANCHOR, utc(2026, 1, 1, 1, 15))
    assert HOURLY.next_run(
        last, start_date=ANCHOR, end_date=None, catchup=True, now=now
    ) == interval(utc(2026, 1, 1, 1, 15), utc(2026, 1, 1, 2, 15))
    assert HOURLY.next_run(
        last, start_date=ANCHOR, end_date=None, catchup=False, now=now
    ) == interval(utc(2026, 1, 1, 3, 15), utc(2026, 1, 1, 4, 15))


def test_interval_without_start_date_never_runs() -> None:
    now = utc(2026, 1, 1, 5)
    assert HOURLY.next_run(None, start_date=None, end_date=None, catchup=False, now=now) is None
    assert HOURLY.upcoming(now, 5) == []


def test_interval_end_date() -> None:
    last = interval(utc(2026, 1, 1, 1, 15), utc(2026, 1, 1, 2, 15))
    run = HOURLY.next_run(
        last, start_date=ANCHOR, end_date=utc(2026, 1, 1, 2), catchup=True, now=utc(2026, 6, 1)
    )
    assert run is None


def test_interval_upcoming() -> None:
    runs = HOURLY.upcoming(utc(2026, 1, 1, 3), 2, start_date=ANCHOR)
    assert runs == [
        interval(utc(2026, 1, 1, 2, 15), utc(2026, 1, 1, 3, 15)),
        interval(utc(2026, 1, 1, 3, 15), utc(2026, 1, 1, 4, 15)),
    ]


def test_interval_runs_between_anchors_on_start_date_or_range_start() -> None:
    on_grid = HOURLY.runs_between(utc(2026, 1, 1, 2), utc(2026, 1, 1, 4), start_date=ANCHOR)
    assert [run.logical_date for run in on_grid] == [utc(2026, 1, 1, 2, 15), utc(2026, 1, 1, 3, 15)]
    from_start = HOURLY.runs_between(utc(2026, 1, 1, 2), utc(2026, 1, 1, 4))
    assert [run.logical_date.hour for run in from_start] == [2, 3, 4]


def test_interval_runs_between_never_before_start_date() -> None:
    runs = HOURLY.runs_between(utc(2025, 12, 31), utc(2026, 1, 1, 2), start_date=ANCHOR)
    assert [run.logical_date for run in runs] == [ANCHOR, utc(2026, 1, 1, 1, 15)]


# --- manual and once -------------------------------------------------------------------------


def test_manual_never_schedules() -> None:
    manual = parse_schedule(None, "UTC")
    assert (
        manual.next_run(
            None, start_date=utc(2026, 1, 1), end_date=None, catchup=True, now=utc(2026, 6, 1)
        )
        is None
    )
    assert manual.upcoming(utc(2026, 1, 1), 5, start_date=utc(2026, 1, 1)) == []
    assert manual.runs_between(utc(2026, 1, 1), utc(2026, 2, 1)) == []


def test_once_runs_once_at_start_date() -> None:
    once = parse_schedule("@once", "UTC")
    start = utc(2026, 1, 1, 6)
    run = once.next_run(None, start_date=start, end_date=None, catchup=False, now=utc(2026, 6, 1))
    assert run == RunInfo(start, start, start, start)
    assert (
        once.next_run(run, start_date=start, end_date=None, catchup=False, now=utc(2026, 6, 1))
        is None
    )
    assert (
        once.next_run(None, start_date=None, end_date=None, catchup=False, now=utc(2026, 6, 1))
        is None
    )
    assert (
        once.next_run(None, start_date=start, end_date=utc(2026, 1, 1), catchup=False, now=start)
        is None
    )


def test_once_upcoming_and_runs_between() -> None:
    once = parse_schedule("@once", "UTC")
    start = utc(2026, 1, 1, 6)
    assert len(once.upcoming(utc(2026, 1, 1), 3, start_date=start)) == 1
    assert once.upcoming(start, 3, start_date=start) == []
    assert once.upcoming(utc(2026, 1, 1), 0, start_date=start) == []
    assert len(once.runs_between(utc(2026, 1, 1), utc(2026, 1, 2), start_date=start)) == 1
    assert once.runs_between(utc(2026, 1, 2), utc(2026, 1, 3), start_date=start) == []
