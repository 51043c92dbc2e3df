"""Pools: named slot budgets shared by tasks across DAGs (e.g. "warehouse" with 4 slots)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from drayman.exceptions import ConfigError
from drayman.store.schema import pool

DEFAULT_POOL = "default_pool"


def ensure_default(conn: Connection, slots: int) -> None:
    if conn.execute(select(pool.c.name).where(pool.c.name == DEFAULT_POOL)).first() is None:
        conn.execute(
            insert(pool).values(name=DEFAULT_POOL, slots=slots, description="tasks with no pool")
        )


def sizes(conn: Connection) -> dict[str, int]:
    """Slots per pool. A task naming a pool that does not exist waits (and says why)."""
    return {row.name: int(row.slots) for row in conn.execute(select(pool))}


def set_pool(conn: Connection, name: str, slots: int, description: str = "") -> None:
    if slots < 0:
        raise ConfigError(f"pool {name!r}: slots must be 0 or more, got {slots}")
    if conn.execute(select(pool.c.name).where(pool.c.name == name)).first():
        conn.execute(
            update(pool).where(pool.c.name == name).values(slots=slots, description=description)
        )
    else:
        conn.execute(insert(pool).values(name=name, slots=slots, description=description))


def list_pools(conn: Connection) -> list[Row[Any]]:
    return list(conn.execute(select(pool).order_by(pool.c.name)))
