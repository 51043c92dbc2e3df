"""Failed-login counters for the rate limit: one row per (scope, key), reserved atomically.

`reserve` is the whole point: "is the counter full? if not, count this attempt" is ONE
guarded UPDATE (`... WHERE failures < limit OR the window is over`), so thirty concurrent
logins against one counter get exactly `limit` reservations whatever the database: the row
lock the UPDATE takes on PostgreSQL and MySQL (SQLite: the one writer) serializes them. A
count read first and written later would let them all through.

Deadlocks (MySQL finds them readily): rows are locked in primary-key order, as a login's
reservation does ("pair ..." sorts before "user ..."). So `purge` picks its rows with a
plain read and deletes them one by one by key, guarded by the window again, never through
the `window_start` index (another order); and `ensure` inserts one missing counter per
transaction (an INSERT IGNORE that meets an existing row holds a shared lock on it until
commit). Counters are created only when a reservation finds one missing: most logins
insert nothing. Two logins inserting a key that a purge has just deleted can still deadlock
on MySQL (its duplicate-key locks); `auth.throttle` runs such a transaction again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, case, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from drayman.store.schema import login_counter

CounterKey = tuple[str, str]  # (scope, key)


def ensure(conn: Connection, counter: CounterKey, now: datetime) -> None:
    """Create the counter if it does not exist yet (empty); an existing one is left alone.
    Alone in its transaction (see the module docstring)."""
    scope, key = counter
    values = {"scope": scope, "key": key, "window_start": now, "failures": 0}
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(postgresql.insert(login_counter).values(**values).on_conflict_do_nothing())
    elif dialect == "sqlite":
        conn.execute(sqlite.insert(login_counter).values(**values).on_conflict_do_nothing())
    else:
        conn.execute(insert(login_counter).prefix_with("IGNORE").values(**values))


PURGE_BATCH = 20


def purge(conn: Connection, ended_before: datetime) -> int:
    """Delete up to PURGE_BATCH counters whose window started at or before `ended_before`
    (they mean nothing any more), locking in primary-key order; how many were candidates."""
    query = (
        select(login_counter.c.scope, login_counter.c.key)
        .where(login_counter.c.window_start <= ended_before)
        .limit(PURGE_BATCH)
    )
    victims = sorted(tuple(r) for r in conn.execute(query))
    for scope, key in victims:
        conn.execute(
            delete(login_counter).where(
                login_counter.c.scope == scope,
                login_counter.c.key == key,
                login_counter.c.window_start <= ended_before,  # not reset since it was read
            )
        )
    return len(victims)


def reserve(
    conn: Connection, counter: CounterKey, limit: int, window_start_after: datetime, now: datetime
) -> bool:
    """Count one attempt if the counter is below `limit` (or its window ended, then it starts
    again at 1 from `now`); whether it was counted (False also when the row is missing: see
    `window_start`). One statement: atomic."""
    scope, key = counter
    expired = login_counter.c.window_start <= window_start_after
    count, started = login_counter.c.failures, login_counter.c.window_start
    result = conn.execute(
        update(login_counter)
        .where(
            login_counter.c.scope == scope,
            login_counter.c.key == key,
            (login_counter.c.failures < limit) | expired,
        )
        # failures first: MySQL evaluates SET left to right, and `expired` must see the old
        # window_start (the default order would be the table's: window_start first)
        .ordered_values(
            (count, case((expired, 1), else_=count + 1)),
            (started, case((expired, now), else_=started)),
        )
    )
    return result.rowcount == 1


def mark_refusal(
    conn: Connection, counter: CounterKey, limit: int, window_start_after: datetime
) -> bool:
    """Mark a full counter as having refused (failures `limit` -> `limit + 1`, still full);
    True only for the first refusal of its window. One guarded statement: of concurrent
    refusals exactly one is first, so a refused login is audited once per window and key, not
    at the rate a client sends them. A new window starts again at 1 (see `reserve`)."""
    scope, key = counter
    result = conn.execute(
        update(login_counter)
        .where(
            login_counter.c.scope == scope,
            login_counter.c.key == key,
            login_counter.c.failures == limit,
            login_counter.c.window_start > window_start_after,
        )
        .values(failures=limit + 1)
    )
    return result.rowcount == 1


def window_start(conn: Connection, counter: CounterKey) -> datetime | None:
    scope, key = counter
    return conn.execute(
        select(login_counter.c.window_start).where(
            login_counter.c.scope == scope, login_counter.c.key == key
        )
    ).scalar_one_or_none()


def forget(conn: Connection, counters: Sequence[CounterKey]) -> None:
    """Set counters back to no failures (a successful login)."""
    for scope, key in counters:
        conn.execute(
            update(login_counter)
            .where(login_counter.c.scope == scope, login_counter.c.key == key)
            .values(failures=0)
        )
