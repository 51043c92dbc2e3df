"""Two schedulers' transactions side by side, on PostgreSQL and MariaDB: who waits for whom.

Found by the chaos test of killed schedulers (test_chaos_schedulers): two schedulers queueing
at the same moment overfilled a pool, and two schedulers' housekeeping deadlocked on MariaDB.
Each test holds two transactions open at once on two connections, as two schedulers do.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Connection, select, text

from drayman.store import components, pools
from drayman.store.engine import Store
from drayman.store.schema import component


@pytest.fixture
def shared(store: Store) -> Store:
    if store.dialect == "sqlite":
        pytest.skip("SQLite allows one scheduler: nothing to share")
    return store


def _lock_timeout(conn: Connection, store: Store) -> None:
    """Waiting on a lock fails after 2 s instead of hanging the test."""
    if store.dialect == "postgresql":
        conn.execute(text("SET LOCAL lock_timeout = '2s'"))
    else:
        conn.execute(text("SET SESSION innodb_lock_wait_timeout = 2"))


def test_one_scheduler_at_a_time_counts_and_takes_pool_slots(shared: Store) -> None:
    with shared.begin() as conn:
        pools.ensure_default(conn, 8)
        pools.set_pool(conn, "narrow", 2)
    first, second = shared.engine.connect(), shared.engine.connect()
    try:
        with first.begin():
            assert pools.lock_for_queueing(first), "nobody else queues: the first may"
            with second.begin():
                _lock_timeout(second, shared)
                assert not pools.lock_for_queueing(second), (
                    "a second scheduler counted pool slots while the first was taking them"
                )
        with second.begin():
            assert pools.lock_for_queueing(second), "the first one committed: the second may"
    finally:
        first.close()
        second.close()


def test_housekeeping_of_two_schedulers_does_not_wait_on_each_other(shared: Store) -> None:
    with shared.begin() as conn:
        now = shared.db_now(conn)
        ids = {}
        # b's last heartbeat sorts between the dead one's and a's in the (kind, state,
        # heartbeat_at) index: a's scan for the dead runs into the entry b's heartbeat moves
        for name, age_s in (("a", 10), ("b", 20), ("dead", 300)):
            ids[name] = components.register(
                conn, kind="scheduler", hostname=name, pid=1, now=now - timedelta(seconds=age_s)
            )
    cutoff = now - timedelta(seconds=30)
    a, b = shared.engine.connect(), shared.engine.connect()
    try:
        # each scheduler's tick: its own heartbeat, then the dead marked stopped
        a.begin()
        b.begin()
        _lock_timeout(a, shared)
        _lock_timeout(b, shared)
        components.heartbeat(a, ids["a"], now)
        components.heartbeat(b, ids["b"], now)
        assert components.mark_dead(a, "scheduler", cutoff, now) == 1, "a found no dead one"
        a.commit()
        assert components.mark_dead(b, "scheduler", cutoff, now) == 0, "stopped twice"
        b.commit()
    finally:
        a.close()
        b.close()
    with shared.read() as conn:
        rows = conn.execute(select(component.c.hostname, component.c.state)).all()
    assert {row.hostname: row.state for row in rows} == {
        "a": "running",
        "b": "running",
        "dead": "stopped",
    }
