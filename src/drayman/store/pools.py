"""Pools: named slot budgets shared by tasks across DAGs (e.g. "warehouse" with 4 slots)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, func, insert, select, update

from drayman.exceptions import ConfigError
from drayman.store.rows import all_as
from drayman.store.schema import pool


@dataclass(frozen=True, slots=True)
class PoolRow:
    """A `pool` row: a named number of slots that task instances share."""

    name: str
    slots: int
    description: str


DEFAULT_POOL = "default_pool"


def ensure_default(conn: Connection, slots: int) -> None:
    if conn.execute(select(pool.c.name).where(pool.c.name == DEFAULT_POOL)).first() is None:
        conn.execute(
            insert(pool).values(name=DEFAULT_POOL, slots=slots, description="tasks with no pool")
        )


def sizes(conn: Connection) -> dict[str, int]:
    """Slots per pool. A task naming a pool that does not exist waits (and says why)."""
    return {row.name: int(row.slots) for row in conn.execute(select(pool))}


def lock_for_queueing(conn: Connection) -> bool:
    """Lock every pool row for this transaction; False if another scheduler holds one.

    Slots in use are counted from committed task instances, so two schedulers queueing at
    the same moment would each miss the other's new tries and together overfill a pool. The
    scheduler holding the pool rows counts and queues; another skips queueing this tick
    (SKIP LOCKED: nobody waits, so no deadlock) and looks again at its next tick, when the
    count includes what the first one queued. PostgreSQL and MySQL only (SQLite has one
    scheduler).
    """
    total = conn.execute(select(func.count()).select_from(pool)).scalar_one()
    locked = conn.execute(select(pool.c.name).with_for_update(skip_locked=True)).all()
    return len(locked) == total


def set_pool(conn: Connection, name: str, slots: int, description: str = "") -> None:
    if slots < 0:
        raise ConfigError(f"pool {name!r}: slots must be 0 or more, got {slots}")
    if conn.execute(select(pool.c.name).where(pool.c.name == name)).first():
        conn.execute(
            update(pool).where(pool.c.name == name).values(slots=slots, description=description)
        )
    else:
        conn.execute(insert(pool).values(name=name, slots=slots, description=description))


def list_pools(conn: Connection) -> list[PoolRow]:
    return all_as(PoolRow, conn.execute(select(pool).order_by(pool.c.name)))
