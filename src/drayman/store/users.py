"""Users of the web UI and the API: one row per person or robot, with a role.

Plain queries; the policy (hashing, rate limiting, what a role may do) is in `drayman.auth`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from drayman.exceptions import ConflictError
from drayman.store.engine import inserted_id
from drayman.store.rows import all_as, one_as
from drayman.store.schema import app_user


@dataclass(frozen=True, slots=True)
class UserRow:
    """An `app_user` row: a person who may sign in, with their role."""

    id: int
    username: str
    password_hash: str
    role: str
    created_at: datetime
    password_changed_at: datetime
    disabled: bool


def insert_user(
    conn: Connection, username: str, password_hash: str, role: str, now: datetime
) -> int:
    """A new user's id; a taken username is a ConflictError (the unique index decides, so two
    concurrent creations cannot both win). The caller's transaction is then unusable."""
    try:
        result = conn.execute(
            insert(app_user).values(
                username=username,
                password_hash=password_hash,
                role=role,
                created_at=now,
                password_changed_at=now,
                disabled=False,
            )
        )
    except IntegrityError as exc:
        raise ConflictError(f"user {username!r} already exists") from exc
    return inserted_id(result)


def user_by_name(conn: Connection, username: str) -> UserRow | None:
    row = conn.execute(select(app_user).where(app_user.c.username == username)).first()
    return None if row is None else one_as(UserRow, row)


def user_by_id(conn: Connection, user_id: int) -> UserRow | None:
    row = conn.execute(select(app_user).where(app_user.c.id == user_id)).first()
    return None if row is None else one_as(UserRow, row)


def list_users(conn: Connection) -> list[UserRow]:
    return all_as(UserRow, conn.execute(select(app_user).order_by(app_user.c.username)))


def set_password_hash(
    conn: Connection, user_id: int, password_hash: str, changed_at: datetime | None
) -> None:
    """Store a new hash; `changed_at` None keeps the date (a rehash is no password change)."""
    values: dict[str, Any] = {"password_hash": password_hash}
    if changed_at is not None:
        values["password_changed_at"] = changed_at
    conn.execute(update(app_user).where(app_user.c.id == user_id).values(**values))


def set_disabled(conn: Connection, user_id: int, disabled: bool) -> None:
    conn.execute(update(app_user).where(app_user.c.id == user_id).values(disabled=disabled))


def set_role(conn: Connection, user_id: int, role: str) -> None:
    conn.execute(update(app_user).where(app_user.c.id == user_id).values(role=role))


def delete_user(conn: Connection, user_id: int) -> None:
    """Delete a user; the database deletes their tokens and sessions with them (FK cascade)."""
    conn.execute(delete(app_user).where(app_user.c.id == user_id))
