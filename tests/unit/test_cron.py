"""Cron expressions: parsing, error messages, and the wall-clock search (no timezones here)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from drayman.cron import PRESETS, CronExpression
from drayman.exceptions import ScheduleError


def walls_after(expression: str, start: datetime, count: int) -> list[datetime]:
    cron = CronExpression.parse(expression)
    found: list[datetime] = []
    current: datetime | None = start
    while len(found) < count and current is not None:
        current = cron.next_wall(current)
        if current is not None:
            found.append(current)
    return found


# --- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "minutes", "hours"),
    [
        ("* * * * *", tuple(range(60)), tuple(range(24))),
        ("*/15 * * * *", (0, 15, 30, 45), tuple(range(24))),
        ("5,10,5 1-3 * * *", (5, 10), (1, 2, 3)),
        ("1-5/2 */6 * * *", (1, 3, 5), (0, 6, 12, 18)),
        ("5/20 22-23 * * *", (5, 25, 45), (22, 23)),
        ("59 0 * * *", (59,), (0,)),
    ],
)
def test_minute_and_hour_fields(
    expression: str, minutes: tuple[int, ...], hours: tuple[int, ...]
) -> None:
    cron = CronExpression.parse(expression)
    assert cron.minutes == minutes
    assert cron.hours == hours


def test_month_and_weekday_names_are_case_insensitive() -> None:
    cron = CronExpression.parse("0 0 * JAN,mar-May MON-fri")
    assert cron.months == (1, 3, 4, 5)
    assert cron.weekdays == {1, 2, 3, 4, 5}


@pytest.mark.parametrize(("field", "weekdays"), [("0", {0}), ("7", {0}), ("5-7", {5, 6, 0})])
def test_sunday_is_both_0_and_7(field: str, weekdays: set[int]) -> None:
    assert CronExpression.parse(f"0 0 * * {field}").weekdays == weekdays


def test_whitespace_is_normalised_in_text() -> None:
    assert CronExpression.parse("  0   3 * *\t* ").text == "0 3 * * *"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("61 * * * *", "minute field: 61 is out of range 0-59"),
        ("* 24 * * *", "hour field: 24 is out of range 0-23"),
        ("* * 0 * *", "day-of-month field: 0 is out of range 1-31"),
        ("* * 32 * *", "day-of-month field: 32 is out of range 1-31"),
        ("* * * 13 *", "month field: 13 is out of range 1-12"),
        ("* * * * 8", "day-of-week field: 8 is out of range 0-7"),
        ("x * * * *", "minute field: 'x' is not a number"),
        ("* * * foo *", "month field: 'foo' is not a number or a name (jan-dec)"),
        ("* * * * mon-someday", "day-of-week field: 'someday' is not a number or a name (sun-sat)"),
        ("*/0 * * * *", "minute field: step 0 must be at least 1"),
        ("*/x * * * *", "minute field: step 'x' is not a number"),
        ("*/ * * * *", "minute field: step '' is not a number"),
        ("5-1 * * * *", "minute field: range '5-1' runs backwards"),
        ("1,,2 * * * *", "minute field: empty list item"),
        ("/5 * * * *", "minute field: '/5' needs a value before '/'"),
        ("1-2-3 * * * *", "minute field: '2-3' is not a number"),
        ("-5 * * * *", "minute field: '' is not a number"),
        ("0 0 30 2 *", "day-of-month field: no selected day exists in the selected months"),
        ("0 0 31 4,6,9,11 *", "day-of-month field: no selected day exists"),
    ],
)
def test_bad_fields_are_named(expression: str, message: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        CronExpression.parse(expression)
    assert str(caught.value).startswith(f"bad schedule '{expression}': {message}")


def test_error_message_matches_the_documented_example() -> None:
    with pytest.raises(ScheduleError, match=r"^bad schedule '61 \* \* \* \*': minute field: 61 is"):
        CronExpression.parse("61 * * * *")
    with pytest.raises(ScheduleError) as caught:
        CronExpression.parse("61 * * * *")
    assert str(caught.value) == "bad schedule '61 * * * *': minute field: 61 is out of range 0-59"


@pytest.mark.parametrize("expression", ["", "* * * *", "* * * * * *", "0 3 * * * 2026"])
def test_wrong_number_of_fields(expression: str) -> None:
    with pytest.raises(ScheduleError, match="expected 5 cron fields"):
        CronExpression.parse(expression)


def test_unicode_digits_are_not_numbers() -> None:
    with pytest.raises(ScheduleError, match="minute field"):
        CronExpression.parse("\u0665 * * * *")  # ARABIC-INDIC DIGIT FIVE


def test_30th_of_february_is_fine_when_weekdays_may_also_match() -> None:
    """Both day fields restricted: either may match, so Fridays still fire."""
    cron = CronExpression.parse("0 0 30 2 fri")
    assert cron.day_or
    assert cron.next_wall(datetime(2026, 2, 1)) == datetime(2026, 2, 6)


@pytest.mark.parametrize(
    ("preset", "expansion"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
    ],
)
def test_presets(preset: str, expansion: str) -> None:
    assert PRESETS[preset] == expansion
    CronExpression.parse(expansion)


def test_every_hour() -> None:
    assert CronExpression.parse("*/5 * * * *").every_hour
    assert CronExpression.parse("0 0-23 * * *").every_hour
    assert CronExpression.parse("0 */1 * * 1").every_hour
    assert not CronExpression.parse("0 */2 * * *").every_hour
    assert not CronExpression.parse("0 3 * * *").every_hour


# --- day-of-month / day-of-week --------------------------------------------------------------


def test_both_day_fields_restricted_means_either() -> None:
    """crontab(5): '0 0 13 * fri' is the 13th *or* any Friday, not Friday the 13th."""
    fires = walls_after("0 0 13 * fri", datetime(2026, 4, 1), 4)
    assert fires == [
        datetime(2026, 4, 3),  # Friday
        datetime(2026, 4, 10),  # Friday
        datetime(2026, 4, 13),  # Monday the 13th
        datetime(2026, 4, 17),  # Friday
    ]


def test_day_field_starting_with_star_is_unrestricted_so_both_must_match() -> None:
    """crontab(5) calls a field starting with '*' unrestricted: then days must match both."""
    cron = CronExpression.parse("0 0 */2 * mon")
    assert not cron.day_or
    fires = walls_after("0 0 */2 * mon", datetime(2026, 4, 1), 3)
    assert fires == [datetime(2026, 4, 13), datetime(2026, 4, 27), datetime(2026, 5, 11)]
    assert all(f.day % 2 == 1 and f.isoweekday() == 1 for f in fires)


def test_only_weekday_restricted() -> None:
    fires = walls_after("30 9 * * mon-fri", datetime(2026, 4, 3, 10), 3)  # a Friday, after 09:30
    assert fires == [
        datetime(2026, 4, 6, 9, 30),
        datetime(2026, 4, 7, 9, 30),
        datetime(2026, 4, 8, 9, 30),
    ]


# --- month ends and leap days ----------------------------------------------------------------


def test_31st_skips_short_months() -> None:
    fires = walls_after("0 0 31 * *", datetime(2026, 1, 1), 7)
    assert [f.month for f in fires] == [1, 3, 5, 7, 8, 10, 12]


def test_leap_day() -> None:
    cron = CronExpression.parse("0 0 29 2 *")
    assert cron.next_wall(datetime(2026, 1, 1)) == datetime(2028, 2, 29)
    assert cron.next_wall(datetime(2028, 2, 29)) == datetime(2032, 2, 29)
    assert cron.prev_wall(datetime(2028, 2, 29)) == datetime(2024, 2, 29)
    assert cron.next_wall(datetime(2096, 2, 29)) == datetime(2104, 2, 29)  # 2100 is not leap


def test_rarest_cron_is_still_found() -> None:
    """29 February on a Sunday (day fields ANDed, since '*/7' starts with '*'): every 28 years."""
    cron = CronExpression.parse("0 0 29 2 */7")
    assert cron.next_wall(datetime(2033, 1, 1)) == datetime(2060, 2, 29)
    assert cron.prev_wall(datetime(2060, 2, 29)) == datetime(2032, 2, 29)


def test_search_stops_at_the_end_of_the_calendar() -> None:
    cron = CronExpression.parse("0 0 1 1 *")
    assert cron.next_wall(datetime(9999, 6, 1)) is None
    assert cron.prev_wall(datetime(1, 1, 1, 0, 0)) is None


# --- next_wall / prev_wall -------------------------------------------------------------------


def test_next_wall_is_strictly_after_and_minute_aligned() -> None:
    cron = CronExpression.parse("*/15 * * * *")
    assert cron.next_wall(datetime(2026, 1, 1, 0, 15)) == datetime(2026, 1, 1, 0, 30)
    assert cron.next_wall(datetime(2026, 1, 1, 0, 14, 59, 999999)) == datetime(2026, 1, 1, 0, 15)
    assert cron.next_wall(datetime(2026, 12, 31, 23, 50)) == datetime(2027, 1, 1, 0, 0)


def test_prev_wall_is_strictly_before() -> None:
    cron = CronExpression.parse("*/15 * * * *")
    assert cron.prev_wall(datetime(2026, 1, 1, 0, 15)) == datetime(2026, 1, 1, 0, 0)
    assert cron.prev_wall(datetime(2026, 1, 1, 0, 15, 0, 1)) == datetime(2026, 1, 1, 0, 15)
    assert cron.prev_wall(datetime(2026, 1, 1, 0, 0)) == datetime(2025, 12, 31, 23, 45)


def test_prev_wall_skips_back_over_months() -> None:
    cron = CronExpression.parse("15 10 * 2,11 *")
    assert cron.prev_wall(datetime(2026, 1, 15)) == datetime(2025, 11, 30, 10, 15)
    assert cron.prev_wall(datetime(2026, 9, 1)) == datetime(2026, 2, 28, 10, 15)


@pytest.mark.parametrize(
    ("expression", "start", "expected"),
    [
        ("0 3 * * *", datetime(2026, 1, 1, 3, 0), datetime(2026, 1, 2, 3, 0)),
        ("0 3 * * *", datetime(2026, 1, 1, 2, 59), datetime(2026, 1, 1, 3, 0)),
        ("0 0 1 * *", datetime(2026, 1, 31, 12), datetime(2026, 2, 1)),
        ("0 0 1 1 *", datetime(2026, 1, 1), datetime(2027, 1, 1)),
        ("45 23 * * sun", datetime(2026, 4, 5, 23, 45), datetime(2026, 4, 12, 23, 45)),
        ("0 12 * dec *", datetime(2026, 1, 1), datetime(2026, 12, 1, 12)),
    ],
)
def test_next_wall_examples(expression: str, start: datetime, expected: datetime) -> None:
    cron = CronExpression.parse(expression)
    assert cron.next_wall(start) == expected
    assert cron.prev_wall(expected + timedelta(minutes=1)) == expected


def test_next_and_prev_agree_over_a_year() -> None:
    """Walking forward then back returns the same walls (a cheap cross-check of both)."""
    cron = CronExpression.parse("10,40 */5 1-10,28-31 * mon,sat")
    forward = walls_after(cron.text, datetime(2026, 1, 1), 150)
    backward: list[datetime] = []
    current: datetime | None = forward[-1]
    while current is not None and current > forward[0]:
        current = cron.prev_wall(current)
        if current is not None:
            backward.append(current)
    assert backward[::-1] == forward[:-1]
    assert all(cron.matches(wall) for wall in forward)


def test_matches() -> None:
    cron = CronExpression.parse("30 2 29 2 *")
    assert cron.matches(datetime(2028, 2, 29, 2, 30))
    assert not cron.matches(datetime(2028, 2, 29, 2, 31))
    assert not cron.matches(datetime(2028, 3, 29, 2, 30))
