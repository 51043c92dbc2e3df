"""Web sessions: one row per logged-in browser, keyed by the sha256 of its cookie's token."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, insert, select, update

from drayman.store.rows import one_as
from drayman.store.schema import app_user, web_session


@dataclass(frozen=True, slots=True)
class SessionOwner:
    """A live web session's id and times, with its enabled owner's user columns."""

    session_id: str
    last_seen_at: datetime
    expires_at: datetime
    id: int
    username: str
    password_hash: str
    role: str
    created_at: datetime
    password_changed_at: datetime
    disabled: bool


def insert_session(
    conn: Connection, session_hash: str, user_id: int, now: datetime, expires_at: datetime
) -> None:
    conn.execute(
        insert(web_session).values(
            id=session_hash,
            user_id=user_id,
            created_at=now,
            expires_at=expires_at,
            last_seen_at=now,
        )
    )


def live_session_owner(conn: Connection, session_hash: str, now: datetime) -> SessionOwner | None:
    """The unexpired session joined to its enabled owner (`session_id`, `last_seen_at`, user)."""
    query = (
        select(
            web_session.c.id.label("session_id"),
            web_session.c.last_seen_at,
            web_session.c.expires_at,
            app_user,
        )
        .join(app_user, app_user.c.id == web_session.c.user_id)
        .where(
            web_session.c.id == session_hash,
            web_session.c.expires_at > now,
            app_user.c.disabled.is_(False),
        )
    )
    row = conn.execute(query).first()
    return None if row is None else one_as(SessionOwner, row)


def touch(conn: Connection, session_hash: str, now: datetime) -> None:
    conn.execute(
        update(web_session).where(web_session.c.id == session_hash).values(last_seen_at=now)
    )


def delete_session(conn: Connection, session_hash: str) -> None:
    conn.execute(delete(web_session).where(web_session.c.id == session_hash))


def delete_user_sessions(conn: Connection, user_id: int) -> int:
    """Log a user out everywhere; how many sessions ended."""
    return conn.execute(delete(web_session).where(web_session.c.user_id == user_id)).rowcount


def delete_expired(conn: Connection, now: datetime) -> int:
    return conn.execute(delete(web_session).where(web_session.c.expires_at <= now)).rowcount
