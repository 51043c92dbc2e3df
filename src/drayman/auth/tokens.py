"""API tokens: long random strings for scripts and CI, sent as `Authorization: Bearer ...`.

A token is shown once, when it is made; the database keeps only its sha256. A fast hash is
enough here (unlike passwords): the token has 256 random bits, so there is nothing to guess.
The first characters (`prefix`) are kept to tell tokens apart in lists.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from drayman.auth import users
from drayman.exceptions import InvalidCredentials, NotFoundError, UnacceptableCredential
from drayman.store import api_tokens, audit
from drayman.store.audit import SYSTEM, Actor, AuditAction
from drayman.store.engine import Store
from drayman.store.schema import ID

TOKEN_PREFIX = "drm_"  # lets secret scanners (and people) recognize a leaked token
PREFIX_LENGTH = len(TOKEN_PREFIX) + 8
# last_used_at is written at most this often, so a busy script costs no write per request
TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class NewToken:
    """A token just made: `token` is the only copy of the secret, print it once."""

    id: int
    username: str
    name: str
    prefix: str
    token: str
    created_at: datetime


@dataclass(frozen=True)
class TokenInfo:
    """What a list shows about a token: never the token or its hash."""

    id: int
    username: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(
    store: Store, username: str, name: str, now: datetime, *, by: Actor = SYSTEM
) -> NewToken:
    """A new token for `username` (NotFoundError if there is no such user)."""
    label = name.strip()
    if not 1 <= len(label) <= ID:
        raise UnacceptableCredential(f"token name: use 1 to {ID} characters, got {len(label)}")
    user = users.get(store, username)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    prefix = token[:PREFIX_LENGTH]
    with store.begin() as conn:
        token_id = api_tokens.insert_token(conn, user.id, label, hash_token(token), prefix, now)
        audit.record(
            conn,
            actor=by,
            action=AuditAction.TOKEN_CREATE,
            now=now,
            object_type="token",
            object_id=str(token_id),
            detail={"user": user.username, "name": label, "prefix": prefix},
        )
    return NewToken(token_id, user.username, label, prefix, token, now)


def verify(store: Store, token: str, now: datetime) -> users.User:
    """The owner of a live token (not revoked, user enabled), or InvalidCredentials."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        raise InvalidCredentials("invalid API token")
    with store.read() as conn:
        row = api_tokens.live_token_owner(conn, hash_token(token))
    if row is None:
        raise InvalidCredentials("invalid API token")
    if row.last_used_at is None or now - row.last_used_at >= TOUCH_EVERY:
        with store.begin() as conn:
            api_tokens.touch(conn, row.token_id, now)
    return users.User.from_row(row)


def revoke(store: Store, token_id: int, now: datetime, *, by: Actor = SYSTEM) -> None:
    """Revoke a token for good (NotFoundError if there is none with this id)."""
    with store.begin() as conn:
        if not api_tokens.revoke(conn, token_id, now):
            raise NotFoundError(f"no API token with id {token_id}; see `drayman tokens list`")
        audit.record(
            conn,
            actor=by,
            action=AuditAction.TOKEN_REVOKE,
            now=now,
            object_type="token",
            object_id=str(token_id),
        )


def list_tokens(store: Store, username: str | None = None) -> list[TokenInfo]:
    """Every token (or one user's), oldest first, revoked ones included."""
    user_id = None if username is None else users.get(store, username).id
    with store.read() as conn:
        rows = api_tokens.list_tokens(conn, user_id)
    return [
        TokenInfo(r.id, r.username, r.name, r.prefix, r.created_at, r.last_used_at, r.revoked_at)
        for r in rows
    ]
