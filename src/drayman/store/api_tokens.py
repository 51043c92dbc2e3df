"""API tokens: credentials for scripts and CI, stored only as their sha256."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from drayman.store.engine import inserted_id
from drayman.store.schema import api_token, app_user


def insert_token(
    conn: Connection, user_id: int, name: str, token_hash: str, prefix: str, now: datetime
) -> int:
    result = conn.execute(
        insert(api_token).values(
            user_id=user_id, name=name, token_hash=token_hash, prefix=prefix, created_at=now
        )
    )
    return inserted_id(result)


def live_token_owner(conn: Connection, token_hash: str) -> Row[Any] | None:
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
    return conn.execute(query).first()


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


def list_tokens(conn: Connection, user_id: int | None = None) -> list[Row[Any]]:
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
    return list(conn.execute(query))
