"""API tokens: credentials for scripts and CI, stored only as their sha256."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, insert, select, update

from drayman.store.engine import inserted_id
from drayman.store.rows import all_as, one_as
from drayman.store.schema import api_token, app_user


@dataclass(frozen=True, slots=True)
class TokenOwner:
    """A live API token's id and last use, with its enabled owner's user columns."""

    token_id: int
    last_used_at: datetime | None
    id: int
    username: str
    password_hash: str
    role: str
    created_at: datetime
    password_changed_at: datetime
    disabled: bool


@dataclass(frozen=True, slots=True)
class TokenListing:
    """An API token as `tokens list` shows it: never its hash."""

    id: int
    user_id: int
    username: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def insert_token(
    conn: Connection, user_id: int, name: str, token_hash: str, prefix: str, now: datetime
) -> int:
    result = conn.execute(
        insert(api_token).values(
            user_id=user_id, name=name, token_hash=token_hash, prefix=prefix, created_at=now
        )
    )
    return inserted_id(result)


def live_token_owner(conn: Connection, token_hash: str) -> TokenOwner | None:
    """The unrevoked token with this hash joined to its enabled owner (`token_id`, user columns)."""
    query = (
        select(api_token.c.id.label("token_id"), api_token.c.last_used_at, app_user)
        .join(app_user, app_user.c.id == api_token.c.user_id)
        .where(
            api_token.c.token_hash == token_hash,
            api_token.c.revoked_at.is_(None),
            app_user.c.disabled.is_(False),
        )
    )
    row = conn.execute(query).first()
    return None if row is None else one_as(TokenOwner, row)


def touch(conn: Connection, token_id: int, now: datetime) -> None:
    conn.execute(update(api_token).where(api_token.c.id == token_id).values(last_used_at=now))


def revoke(conn: Connection, token_id: int, now: datetime) -> bool:
    """Revoke a token; False if there is no such token. Revoking twice keeps the first date."""
    exists = conn.execute(select(api_token.c.id).where(api_token.c.id == token_id)).first()
    if exists is None:
        return False
    conn.execute(
        update(api_token)
        .where(api_token.c.id == token_id, api_token.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return True


def list_tokens(conn: Connection, user_id: int | None = None) -> list[TokenListing]:
    """Tokens with their owner's `username`, oldest first; never the hash."""
    query = (
        select(
            api_token.c.id,
            api_token.c.user_id,
            app_user.c.username,
            api_token.c.name,
            api_token.c.prefix,
            api_token.c.created_at,
            api_token.c.last_used_at,
            api_token.c.revoked_at,
        )
        .join(app_user, app_user.c.id == api_token.c.user_id)
        .order_by(api_token.c.id)
    )
    if user_id is not None:
        query = query.where(api_token.c.user_id == user_id)
    return all_as(TokenListing, conn.execute(query))
