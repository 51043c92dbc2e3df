"""How runs come to be: scheduled ticks (catchup or not, paused or not), backfills, and the
bundle version each run is pinned to. On SQLite, PostgreSQL and MariaDB.

Scheduled-run tests hand `tick()` a fixed `now` in 2024: the DAGs' timetables see that clock,
while their tasks run for real.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from drayman import run_creation
from drayman.states import RunState, RunType, TIState
from drayman.store import dags as dag_store

if TYPE_CHECKING:
    from support.harness import Harness, MakeHarness

NOW = datetime(2024, 1, 1, 5, 30, tzinfo=UTC)  # 30 minutes into the sixth hour of the year

HOURLY = """
    from drayman import DAG, task

    @task
    def hour(ctx) -> str:
        return ctx.data_interval_start.isoformat()

    with DAG("hourly", schedule="@hourly", start_date="2024-01-01", catchup=False):
        hour()

    with DAG("hourly_catchup", schedule="@hourly", start_date="2024-01-01", catchup=True,
             max_active_runs=32):
        hour()
"""


def _hours(*hours: int) -> list[datetime]:
    return [datetime(2024, 1, 1, hour, tzinfo=UTC) for hour in hours]


def test_without_catchup_only_the_latest_complete_interval_runs(
    scheduler_harness: MakeHarness,
) -> None:
    h = scheduler_harness({"hourly.py": HOURLY})
    with h.store.begin() as conn:
        dag_store.set_paused(conn, "hourly_catchup", True, NOW)
    assert h.tick(NOW).runs_created == 1
    (run,) = h.runs("hourly")
    assert run.run_type == RunType.SCHEDULED
    assert run.run_id == "scheduled__2024-01-01T04:00:00+00:00"
    assert (run.logical_date, run.data_interval_start) == (*_hours(4), *_hours(4))
    assert (run.data_interval_end, run.run_after) == (*_hours(5), *_hours(5))
    assert h.tick(NOW).runs_created == 0  # the same `now` again: nothing new is due
    assert len(h.runs("hourly")) == 1

    # paused: three hours pass and no run is created
    later = NOW + timedelta(hours=3)
    with h.store.begin() as conn:
        dag_store.set_paused(conn, "hourly", True, later)
    assert h.tick(later).runs_created == 0
    assert len(h.runs("hourly")) == 1
    # unpaused without catchup: the gap is skipped, only the latest interval runs
    with h.store.begin() as conn:
        dag_store.set_paused(conn, "hourly", False, later)
    h.scheduler.mark_all_dirty()  # what the CLI's doorbell does after an unpause
    assert h.tick(later).runs_created == 1
    assert [r.logical_date for r in h.runs("hourly")] == _hours(4, 7)
    assert h.runs("hourly_catchup") == []  # paused from the start
    h.drive_runs("hourly", *(r.run_id for r in h.runs("hourly")), now=later)
    results = [json.loads(h.tis("hourly", r.run_id)[("hour", -1)].result) for r in h.runs("hourly")]
    assert results == ["2024-01-01T04:00:00+00:00", "2024-01-01T07:00:00+00:00"]


def test_with_catchup_every_interval_since_start_date_runs(
    scheduler_harness: MakeHarness,
) -> None:
    h = scheduler_harness({"hourly.py": HOURLY})
    with h.store.begin() as conn:
        dag_store.set_paused(conn, "hourly", True, NOW)
    created = sum(h.tick(NOW).runs_created for _ in range(10))
    assert created == 5
    runs = h.runs("hourly_catchup")
    assert [r.logical_date for r in runs] == _hours(0, 1, 2, 3, 4)
    assert [r.data_interval_end for r in runs] == _hours(1, 2, 3, 4, 5)
    assert {r.run_type for r in runs} == {RunType.SCHEDULED}
    # all five may be active at once (max_active_runs=32)
    assert {r.state for r in runs} <= {RunState.RUNNING, RunState.SUCCESS}
    # pausing stops creation even when the next interval falls due
    with h.store.begin() as conn:
        dag_store.set_paused(conn, "hourly_catchup", True, NOW)
    assert h.tick(NOW + timedelta(hours=2)).runs_created == 0
    assert len(h.runs("hourly_catchup")) == 5
    h.drive_runs("hourly_catchup", *(r.run_id for r in runs), now=NOW)
    assert {r.state for r in h.runs("hourly_catchup")} == {RunState.SUCCESS}


DAILY = """
    from drayman import DAG, task

    # end_date in the past: the scheduler itself never creates a run of it
    with DAG("daily", schedule="@daily", start_date="2024-01-01", end_date="2024-01-10"):

        @task
        def day(ctx) -> list:
            return [ctx.ds, ctx.data_interval_end.isoformat()]

        day()
"""


def test_backfill_creates_one_run_per_day_once(scheduler_harness: MakeHarness) -> None:
    h = scheduler_harness({"daily.py": DAILY})
    start, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 3, tzinfo=UTC)
    with h.store.begin() as conn:
        made = run_creation.backfill(
            conn, "daily", start=start, end=end, triggered_by="test", now=h.store.now()
        ).created
    assert made == [
        "backfill__2024-01-01T00:00:00+00:00",
        "backfill__2024-01-02T00:00:00+00:00",
        "backfill__2024-01-03T00:00:00+00:00",
    ]
    runs = h.drive_runs("daily", *made)
    assert {run.state for run in runs.values()} == {RunState.SUCCESS}
    assert {run.run_type for run in runs.values()} == {RunType.BACKFILL}
    results = [json.loads(h.tis("daily", run_id)[("day", -1)].result) for run_id in made]
    assert results == [
        ["2024-01-01", "2024-01-02T00:00:00+00:00"],
        ["2024-01-02", "2024-01-03T00:00:00+00:00"],
        ["2024-01-03", "2024-01-04T00:00:00+00:00"],
    ]
    with h.store.begin() as conn:
        again = run_creation.backfill(
            conn, "daily", start=start, end=end, triggered_by="test", now=h.store.now()
        ).created
    assert again == []
    h.tick()
    assert [r.run_id for r in h.runs("daily")] == made  # and no scheduled run either


PINNED = """
    import time
    from drayman import DAG, task

    with DAG("pinned"):

        @task
        def version() -> str:
            time.sleep(SLEEP)
            return "VERSION"

        version()
"""


def test_a_run_keeps_the_bundle_version_it_was_created_with(
    scheduler_harness: MakeHarness,
) -> None:
    h = scheduler_harness({"pinned.py": PINNED.replace("SLEEP", "1").replace("VERSION", "v1")})
    with h.store.read() as conn:
        first_version = dag_store.get_dag(conn, "pinned").bundle_version
    h.trigger("pinned", "r1")
    h.drive(lambda conn: h.states("pinned", "r1").get("version") == TIState.RUNNING)

    h.write_dag("pinned.py", PINNED.replace("SLEEP", "0").replace("VERSION", "v2"))
    second_version = h.publish()
    assert second_version is not None and second_version != first_version
    h.trigger("pinned", "r2")
    runs = h.drive_runs("pinned", "r1", "r2")

    assert runs["r1"].bundle_version == first_version
    assert runs["r2"].bundle_version == second_version
    assert {run.state for run in runs.values()} == {RunState.SUCCESS}
    assert json.loads(h.tis("pinned", "r1")[("version", -1)].result) == "v1"
    assert json.loads(h.tis("pinned", "r2")[("version", -1)].result) == "v2"


EVERY_SIX_HOURS = """
    from datetime import timedelta
    from drayman import DAG, task

    with DAG("six_hourly", schedule=timedelta(hours=6), start_date="2024-01-01T03:00"):

        @task
        def chunk(ctx) -> str:
            return ctx.logical_date.isoformat()

        chunk()
"""


def test_a_backfill_of_an_interval_schedule_follows_the_dags_grid(
    scheduler_harness: MakeHarness,
) -> None:
    h = scheduler_harness({"six.py": EVERY_SIX_HOURS})
    noon = datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert h.tick(noon).runs_created == 1  # the scheduler's own grid: 03:00, 09:00, ...
    (scheduled,) = h.runs("six_hourly")
    assert scheduled.logical_date == datetime(2024, 1, 1, 3, tzinfo=UTC)
    with h.store.begin() as conn:
        made = run_creation.backfill(
            conn,
            "six_hourly",
            start=datetime(2024, 1, 1, tzinfo=UTC),
            end=noon,
            triggered_by="test",
            now=h.store.now(),
        ).created
    # 03:00 already has its scheduled run; nothing before start_date or off the grid
    assert made == ["backfill__2024-01-01T09:00:00+00:00"]
    assert [r.logical_date for r in h.runs("six_hourly")] == [
        datetime(2024, 1, 1, 3, tzinfo=UTC),
        datetime(2024, 1, 1, 9, tzinfo=UTC),
    ]


OPEN_ENDED = """
    from drayman import DAG, task

    with DAG("open_daily", schedule="@daily", start_date="2024-01-01"):

        @task
        def day() -> None:
            pass

        day()

    with DAG("by_hand", schedule=None, start_date="2024-01-01"):

        @task
        def once() -> None:
            pass

        once()
"""

MID_FIFTH = datetime(2024, 1, 5, 12, tzinfo=UTC)  # the 5th's interval ends at the 6th's midnight


def _backfill(
    h: Harness, start: datetime, end: datetime, *, dag_id: str = "open_daily", **kw: bool
) -> run_creation.Backfill:
    with h.store.begin() as conn:
        return run_creation.backfill(
            conn, dag_id, start=start, end=end, triggered_by="test", now=MID_FIFTH, **kw
        )


def _day(day: int) -> datetime:
    return datetime(2024, 1, day, tzinfo=UTC)


def test_a_backfill_creates_no_run_whose_interval_has_not_ended(
    scheduler_harness: MakeHarness,
) -> None:
    h = scheduler_harness({"open.py": OPEN_ENDED})
    done = _backfill(h, _day(3), _day(7))
    # the 4th's interval ended at the 5th's midnight; the 5th's ends after MID_FIFTH
    assert done.created == [
        "backfill__2024-01-03T00:00:00+00:00",
        "backfill__2024-01-04T00:00:00+00:00",
    ]
    assert [i.logical_date for i in done.not_ended] == [_day(5), _day(6), _day(7)]
    assert done.why_none is None
    assert [r.logical_date for r in h.runs("open_daily")] == [_day(3), _day(4)]

    asked = _backfill(h, _day(3), _day(7), include_future=True)
    assert asked.created == [
        "backfill__2024-01-05T00:00:00+00:00",
        "backfill__2024-01-06T00:00:00+00:00",
        "backfill__2024-01-07T00:00:00+00:00",
    ]
    assert asked.not_ended == [] and asked.existing == 2


def test_a_backfill_of_the_future_says_so(scheduler_harness: MakeHarness) -> None:
    h = scheduler_harness({"open.py": OPEN_ENDED})
    done = _backfill(h, _day(6), _day(9))
    assert done.created == [] and h.runs("open_daily") == []
    assert done.why_none is not None
    assert "4 have not ended yet" in done.why_none
    assert "2024-01-07T00:00:00+00:00" in done.why_none  # when the first of them ends
    assert "--include-future" in done.why_none


def test_a_backfill_before_start_date_says_so(scheduler_harness: MakeHarness) -> None:
    h = scheduler_harness({"open.py": OPEN_ENDED})
    done = _backfill(h, datetime(2023, 12, 1, tzinfo=UTC), datetime(2023, 12, 31, tzinfo=UTC))
    assert done.created == []
    assert done.why_none is not None
    assert "before the DAG's start_date 2024-01-01" in done.why_none


def test_a_backfill_whose_runs_exist_says_so(scheduler_harness: MakeHarness) -> None:
    h = scheduler_harness({"open.py": OPEN_ENDED})
    assert len(_backfill(h, _day(1), _day(3)).created) == 3
    done = _backfill(h, _day(1), _day(3))
    assert done.created == [] and done.existing == 3
    assert done.why_none == "every interval in the range already has a run (3)"
    mixed = _backfill(h, _day(2), _day(6))  # 2, 3 exist, 4 is created, 5 and 6 have not ended
    assert mixed.created == ["backfill__2024-01-04T00:00:00+00:00"]
    nothing = _backfill(h, _day(3), _day(6))
    assert nothing.why_none is not None
    assert nothing.why_none.startswith("of the range's 4 intervals, 2 already have a run and 2")


def test_a_backfill_of_a_manual_dag_says_it_has_no_schedule(
    scheduler_harness: MakeHarness,
) -> None:
    h = scheduler_harness({"open.py": OPEN_ENDED})
    done = _backfill(h, _day(1), _day(3), dag_id="by_hand")
    assert done.created == []
    assert done.why_none is not None and "no schedule" in done.why_none
