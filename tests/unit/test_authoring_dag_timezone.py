"""A DAG without `timezone=` takes the timezone of an aware `start_date`, as in Airflow.

Never silently UTC: a named zone (zoneinfo, pytz, pendulum-like `.name`) keeps its name and
so its daylight saving time; UTC stays UTC; a fixed UTC offset is no place's clock, so it is
refused with an error that says to set `timezone=`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import pytest
import pytz  # type: ignore[import-untyped]

from drayman import DAG
from drayman.authoring.dag import reset_registry
from drayman.exceptions import DagDefinitionError, TimezoneError
from drayman.timetables import parse_schedule


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    reset_registry()
    yield
    reset_registry()


class NamedZone(tzinfo):
    """A pendulum-2-like tzinfo: not a ZoneInfo, but it carries the IANA name as `.name`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._zone = ZoneInfo(name)

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return self._zone.utcoffset(dt)

    def dst(self, dt: datetime | None) -> timedelta | None:
        return self._zone.dst(dt)

    def tzname(self, dt: datetime | None) -> str | None:
        return self._zone.tzname(dt)


def test_a_zoneinfo_start_date_gives_its_zone() -> None:
    dag = DAG(
        "d", schedule="0 3 * * *", start_date=datetime(2026, 1, 1, tzinfo=ZoneInfo("Europe/Berlin"))
    )
    assert dag.timezone == "Europe/Berlin"
    assert dag.start_date == datetime(2026, 1, 1, tzinfo=ZoneInfo("Europe/Berlin"))
    assert dag.to_spec("d.py").timezone == "Europe/Berlin"


def test_the_zone_decides_when_runs_fire_across_dst() -> None:
    """03:00 Berlin wall time: 02:00 UTC in winter, 01:00 UTC in summer (not 03:00 UTC)."""
    dag = DAG(
        "d", schedule="0 3 * * *", start_date=datetime(2026, 1, 1, tzinfo=ZoneInfo("Europe/Berlin"))
    )
    timetable = parse_schedule(dag.schedule, dag.timezone)
    after = datetime(2026, 7, 1, tzinfo=UTC)
    first = timetable.upcoming(after, 1, start_date=dag.start_date, end_date=None)[0]
    assert first.run_after == datetime(2026, 7, 1, 1, tzinfo=UTC)


def test_a_pytz_start_date_gives_its_zone() -> None:
    start = pytz.timezone("Asia/Tokyo").localize(datetime(2026, 1, 1))
    dag = DAG("d", start_date=start)
    assert dag.timezone == "Asia/Tokyo"
    assert dag.start_date is not None and dag.start_date.utcoffset() == timedelta(hours=9)


def test_a_pendulum_like_start_date_gives_its_name() -> None:
    dag = DAG("d", start_date=datetime(2026, 1, 1, tzinfo=NamedZone("America/Los_Angeles")))
    assert dag.timezone == "America/Los_Angeles"
    assert dag.start_date is not None
    assert dag.start_date.isoformat() == "2026-01-01T00:00:00-08:00"


@pytest.mark.parametrize(
    "start",
    [
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=timezone(timedelta(0), "Z")),
        "2026-01-01T00:00:00+00:00",
        "2026-01-01T00:00:00Z",
    ],
)
def test_utc_stays_utc(start: object) -> None:
    dag = DAG("d", start_date=start)  # type: ignore[arg-type]
    assert dag.timezone == "UTC"


@pytest.mark.parametrize(
    "start",
    [datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=2))), "2026-01-01T00:00:00+02:00"],
)
def test_a_fixed_offset_is_refused_with_what_to_do(start: object) -> None:
    with pytest.raises(TimezoneError) as caught:
        DAG("fixed", start_date=start)  # type: ignore[arg-type]
    message = str(caught.value)
    assert "DAG 'fixed'" in message and "start_date" in message
    assert "+02:00" in message and "timezone=" in message
    assert "Etc/GMT-2" in message  # the IANA name of that fixed offset, if that is really wanted


def test_an_unnamed_zone_is_refused_with_what_to_do() -> None:
    class Nameless(tzinfo):
        # like dateutil's tzfile: the offset depends on the date, so without one it is None
        def utcoffset(self, dt: datetime | None) -> timedelta | None:
            if dt is None:
                return None
            return timedelta(hours=1) if dt.month in (4, 5) else timedelta(0)

        def dst(self, dt: datetime | None) -> timedelta:
            return timedelta(0)

    with pytest.raises(TimezoneError, match="timezone="):
        DAG("d", start_date=datetime(2026, 1, 1, tzinfo=Nameless()))


def test_an_explicit_timezone_wins_over_the_start_date_zone() -> None:
    start = datetime(2026, 1, 1, 9, tzinfo=ZoneInfo("Europe/Berlin"))
    dag = DAG("d", timezone="America/New_York", start_date=start)
    assert dag.timezone == "America/New_York"
    assert dag.start_date == start  # the same instant
    assert dag.start_date is not None and dag.start_date.isoformat() == "2026-01-01T03:00:00-05:00"


def test_a_fixed_offset_with_an_explicit_timezone_is_fine() -> None:
    dag = DAG("d", timezone="Europe/Berlin", start_date="2026-01-01T00:00:00+02:00")
    assert dag.timezone == "Europe/Berlin"


@pytest.mark.parametrize("start", [None, "2026-01-01", datetime(2026, 1, 1)])
def test_no_aware_start_date_means_utc(start: object) -> None:
    assert DAG("d", start_date=start).timezone == "UTC"  # type: ignore[arg-type]


def test_a_bad_timezone_argument_still_names_the_dag() -> None:
    with pytest.raises(DagDefinitionError, match="DAG 'd': timezone must be an IANA name"):
        DAG("d", timezone=5)  # type: ignore[arg-type]
