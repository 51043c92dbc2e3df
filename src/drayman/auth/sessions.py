"""Browser sessions: a random token in an HttpOnly cookie, its sha256 in `web_session`.

A session ends at `expires_at` (a fixed lifetime from login, not extended by use, so a stolen
cookie is worth a bounded time), at logout, when the user's password changes, or when the
user is disabled or deleted.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from drayman.auth.users import User
from drayman.store import web_sessions
from drayman.store.engine import Store

LIFETIME = timedelta(hours=12)
# last_seen_at is written at most this often: a page view should not always cost a write
TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class NewSession:
    """`token` goes into the cookie and nowhere else."""

    token: str
    expires_at: datetime


def hash_session(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(store: Store, user: User, now: datetime, lifetime: timedelta = LIFETIME) -> NewSession:
    """A session for a user who has just logged in."""
    token = secrets.token_urlsafe(32)
    expires_at = now + lifetime
    with store.begin() as conn:
        web_sessions.insert_session(conn, hash_session(token), user.id, now, expires_at)
    return NewSession(token, expires_at)


def resolve(store: Store, token: str, now: datetime) -> User | None:
    """The user of a live session, or None (unknown, expired, revoked or user disabled)."""
    if not token or len(token) > 200:
        return None
    session_hash = hash_session(token)
    with store.read() as conn:
        row = web_sessions.live_session_owner(conn, session_hash, now)
    if row is None:
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        with store.begin() as conn:
            web_sessions.touch(conn, session_hash, now)
    return User.from_row(row)


def revoke(store: Store, token: str) -> None:
    """Log out: the session ends now (nothing happens if it had already ended)."""
    with store.begin() as conn:
        web_sessions.delete_session(conn, hash_session(token))


def revoke_all(store: Store, user: User) -> int:
    """Log a user out everywhere; how many sessions ended."""
    with store.begin() as conn:
        return web_sessions.delete_user_sessions(conn, user.id)


def purge_expired(store: Store, now: datetime) -> int:
    """Delete ended sessions (the web calls it now and then); how many."""
    with store.begin() as conn:
        return web_sessions.delete_expired(conn, now)
