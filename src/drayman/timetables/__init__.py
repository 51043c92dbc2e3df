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
timetable walks that set in instant order; see `grids.CronGrid` for how that stays fast.

Where things live
-----------------
The cron expression itself (fields, matching, next and previous wall-clock minute) is
`drayman.cron`. Here: `zones` (IANA names, UTC, DST notes), `grids` (fire points),
`runs` (`RunInfo` and the data-interval rules), `kinds` (the four timetables) and `parsing`
(``schedule`` -> timetable). Import the names below from ``drayman.timetables``.
"""

from __future__ import annotations

from drayman.cron import PRESETS, CronExpression
from drayman.timetables.kinds import (
    CronTimetable,
    IntervalTimetable,
    ManualTimetable,
    OnceTimetable,
    Timetable,
)
from drayman.timetables.parsing import parse_schedule, schedule_to_string
from drayman.timetables.runs import RunInfo
from drayman.timetables.zones import dst_change, load_timezone

# Not public API (hence not in __all__): authoring names a DAG's zone with it.
from drayman.timetables.zones import zone_name_of as zone_name_of

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
