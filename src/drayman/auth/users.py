"""Accounts: create, look up, log in (rate-limited), change a password, delete.

There is no default user and no shipped password: the first admin is made with
`drayman users create NAME --role admin`. Usernames are case-insensitive (stored lowercase),
so "Alice" and "alice" are one user on every database, whatever its collation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from drayman.auth import throttle
from drayman.auth.passwords import Passwords
from drayman.auth.roles import Role, parse_role
from drayman.exceptions import InvalidCredentials, NotFoundError, UnacceptableCredential
from drayman.store import users as user_store
from drayman.store import web_sessions
from drayman.store.engine import Store
from drayman.store.schema import USERNAME

_USERNAME_RE = re.compile(r"[a-z0-9][a-z0-9._@-]*")


@dataclass(frozen=True)
class User:
    """A user as the rest of drayman sees one: never with the password hash."""

    id: int
    username: str
    role: Role
    created_at: datetime
    password_changed_at: datetime
    disabled: bool

    @classmethod
    def from_row(cls, row: Any) -> User:
        return cls(
            id=row.id,
            username=row.username,
            role=Role(row.role),
            created_at=row.created_at,
            password_changed_at=row.password_changed_at,
            disabled=bool(row.disabled),
        )


def normalize_username(username: str) -> str:
    """The stored form of a username, or UnacceptableCredential saying what is wrong."""
    name = username.strip().lower()
    if not 1 <= len(name) <= USERNAME or not _USERNAME_RE.fullmatch(name):
        raise UnacceptableCredential(
            f"username {username!r}: use 1 to {USERNAME} letters, digits and . _ @ -, "
            "starting with a letter or digit"
        )
    return name


def create(
    store: Store, passwords: Passwords, username: str, password: str, role: str, now: datetime
) -> User:
    """A new user; ConflictError if the name is taken, UnacceptableCredential if refused."""
    name, checked_role = normalize_username(username), parse_role(role)
    password_hash = passwords.hash(password)
    with store.begin() as conn:
        user_id = user_store.insert_user(conn, name, password_hash, checked_role.value, now)
        return User.from_row(user_store.user_by_id(conn, user_id))


def get(store: Store, username: str) -> User:
    """The user called `username`, or NotFoundError."""
    with store.read() as conn:
        row = user_store.user_by_name(conn, _lookup_name(username))
    if row is None:
        raise NotFoundError(f"no user {username!r}; see `drayman users list`")
    return User.from_row(row)


def list_users(store: Store) -> list[User]:
    with store.read() as conn:
        return [User.from_row(row) for row in user_store.list_users(conn)]


def authenticate(
    store: Store,
    passwords: Passwords,
    username: str,
    password: str,
    address: str,
    now: datetime,
    limits: throttle.LoginLimits | None = None,
) -> User:
    """The user whose password this is, or InvalidCredentials / TooManyAttempts.

    An unknown, malformed or disabled username costs the same time as a wrong password and
    gets the same answer, so neither timing nor message tells which usernames exist.
    """
    limits = limits or throttle.LoginLimits()
    name = _lookup_name(username)
    with store.read() as conn:
        throttle.check(conn, name, address, now, limits)
        row = user_store.user_by_name(conn, name)
    matched = _matching(passwords, row, password)
    if matched is None:
        with store.begin() as conn:
            throttle.record_failure(conn, name, address, now, limits)
        raise InvalidCredentials("invalid username or password")
    # hashed outside the write transaction: argon2 takes long enough to matter to SQLite
    new_hash = None
    if passwords.needs_rehash(matched.password_hash):
        new_hash = passwords.hash(password, check=False)
    with store.begin() as conn:
        throttle.record_success(conn, name)
        if new_hash is not None:
            user_store.set_password_hash(conn, matched.id, new_hash, None)
    return User.from_row(matched)


def _matching(passwords: Passwords, row: Any, password: str) -> Any:
    """The row if the password is right and the user enabled, else None; same cost either way."""
    if row is None:
        passwords.waste_time(password)
        return None
    if not passwords.verify(row.password_hash, password) or row.disabled:
        return None
    return row


def set_password(
    store: Store, passwords: Passwords, username: str, password: str, now: datetime
) -> int:
    """Change a password and end every web session of the user; how many sessions ended.

    API tokens stay valid: they are separate credentials, made for scripts that should not
    break when a person changes a password. Revoke them with `drayman tokens revoke`.
    """
    user = get(store, username)
    password_hash = passwords.hash(password)
    with store.begin() as conn:
        user_store.set_password_hash(conn, user.id, password_hash, now)
        return web_sessions.delete_user_sessions(conn, user.id)


def set_disabled(store: Store, username: str, disabled: bool) -> None:
    """Disable (or enable again) a user: a disabled user's logins, sessions and tokens fail."""
    user = get(store, username)
    with store.begin() as conn:
        user_store.set_disabled(conn, user.id, disabled)


def delete(store: Store, username: str) -> None:
    """Delete a user with their API tokens and sessions."""
    user = get(store, username)
    with store.begin() as conn:
        user_store.delete_user(conn, user.id)


def _lookup_name(username: str) -> str:
    """The name to look up: normalized, or as typed (lowercased) if malformed, so a
    malformed name is just another unknown user (and is counted by the rate limit)."""
    try:
        return normalize_username(username)
    except UnacceptableCredential:
        return username.strip().lower()[:USERNAME]
