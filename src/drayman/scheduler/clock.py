"""The scheduler's clock: the `now` each tick is given, and the database's clock read from it.

Every deadline of the scheduler is a time of the clock `Scheduler.tick(now)` is given, never of
another (`time.monotonic`, the host's clock read again mid-tick): a test drives them all by
passing later times.
"""

from __future__ import annotations

from datetime import UTC, datetime

from drayman.store.engine import Connection, Store

# Every deadline starts here: whatever it guards is due on the first tick.
LONG_AGO = datetime(1970, 1, 1, tzinfo=UTC)


def db_time(store: Store, conn: Connection, now: datetime) -> datetime:
    """The database's clock at `now`. Liveness on a shared database is judged by its clock,
    never by one host's: its offset from ours is read and added to `now`, so heartbeats and
    cutoffs move with the clock the tick is given."""
    return now + (store.db_now(conn) - store.now())
