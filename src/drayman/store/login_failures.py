"""Failed logins, kept for the rate limit's window: per username and per client address."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, delete, func, insert, select

from drayman.store.schema import login_failure


def record(conn: Connection, username: str, address: str, now: datetime) -> None:
    conn.execute(insert(login_failure).values(username=username, address=address, created_at=now))


def count_since(
    conn: Connection, since: datetime, *, username: str | None = None, address: str | None = None
) -> tuple[int, datetime | None]:
    """How many failures since `since` for a username or an address, and the oldest of them."""
    query = select(func.count(), func.min(login_failure.c.created_at)).where(
        login_failure.c.created_at > since
    )
    if username is not None:
        query = query.where(login_failure.c.username == username)
    if address is not None:
        query = query.where(login_failure.c.address == address)
    count, oldest = conn.execute(query).one()
    return int(count), oldest


def clear_username(conn: Connection, username: str) -> None:
    """Forget a username's failures (after a successful login). Addresses keep theirs."""
    conn.execute(delete(login_failure).where(login_failure.c.username == username))


def purge_before(conn: Connection, cutoff: datetime) -> None:
    conn.execute(delete(login_failure).where(login_failure.c.created_at <= cutoff))
