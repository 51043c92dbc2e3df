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
from drayman.auth.login_gate import LoginGate
from drayman.auth.passwords import Passwords
from drayman.auth.roles import Role, parse_role
from drayman.exceptions import (
    InvalidCredentials,
    NotFoundError,
    TooManyAttempts,
    UnacceptableCredential,
)
from drayman.store import audit, web_sessions
from drayman.store import users as user_store
from drayman.store.audit import SYSTEM, Actor, AuditAction
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
    store: Store,
    passwords: Passwords,
    username: str,
    password: str,
    role: str,
    now: datetime,
    *,
    by: Actor = SYSTEM,
) -> User:
    """A new user; ConflictError if the name is taken, UnacceptableCredential if refused."""
    name, checked_role = normalize_username(username), parse_role(role)
    password_hash = passwords.hash(password)
    with store.begin() as conn:
        user_id = user_store.insert_user(conn, name, password_hash, checked_role.value, now)
        _audit(conn, by, AuditAction.USER_CREATE, name, now, role=checked_role.value)
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
    gate: LoginGate | None = None,
) -> User:
    """The user whose password this is, or InvalidCredentials / TooManyAttempts.

    An unknown, malformed or disabled username costs the same time as a wrong password and
    gets the same answer, so neither timing nor message tells which usernames exist. The
    check runs inside a `gate` slot (LoginBusy at once when none is free), and the attempt
    is counted by the rate limit before the check (see auth.throttle). Every outcome but
    LoginBusy is an audit event, except that a throttled login is audited once per counter
    window (it checks no password, and a client could otherwise write a row per request).
    """
    limits = limits or throttle.LoginLimits()
    gate = gate or LoginGate(1 << 16)
    name = _lookup_name(username)
    who = Actor(name, address)
    with gate.slot():
        try:
            throttle.reserve(store, name, address, now, limits)
        except TooManyAttempts:
            if throttle.first_refusal(store, name, address, now, limits):
                _audit_login(store, who, now, "throttled")
            raise
        with store.read() as conn:
            row = user_store.user_by_name(conn, name)
        matched = _matching(passwords, row, password)
    if matched is None:
        _audit_login(store, who, now, "invalid")
        raise InvalidCredentials("invalid username or password")
    # hashed outside the write transaction: argon2 takes long enough to matter to SQLite
    new_hash = None
    if passwords.needs_rehash(matched.password_hash):
        new_hash = passwords.hash(password, check=False)
    with store.begin() as conn:
        throttle.record_success(conn, name, address)
        if new_hash is not None:
            user_store.set_password_hash(conn, matched.id, new_hash, None)
        _audit(conn, who, AuditAction.LOGIN_SUCCESS, name, now)
    return User.from_row(matched)


def _audit_login(store: Store, who: Actor, now: datetime, reason: str) -> None:
    with store.begin() as conn:
        _audit(conn, who, AuditAction.LOGIN_FAILURE, who.name, now, reason=reason)


def _matching(passwords: Passwords, row: Any, password: str) -> Any:
    """The row if the password is right and the user enabled, else None; same cost either way."""
    if row is None:
        passwords.waste_time(password)
        return None
    if not passwords.verify(row.password_hash, password) or row.disabled:
        return None
    return row


def set_password(
    store: Store,
    passwords: Passwords,
    username: str,
    password: str,
    now: datetime,
    *,
    by: Actor = SYSTEM,
) -> int:
    """Change a password and end every web session of the user; how many sessions ended.

    API tokens stay valid: they are separate credentials, made for scripts that should not
    break when a person changes a password. Revoke them with `drayman tokens revoke`.
    """
    user = get(store, username)
    password_hash = passwords.hash(password)
    with store.begin() as conn:
        user_store.set_password_hash(conn, user.id, password_hash, now)
        ended = web_sessions.delete_user_sessions(conn, user.id)
        _audit(conn, by, AuditAction.USER_SET_PASSWORD, user.username, now, sessions_ended=ended)
        return ended


def set_disabled(
    store: Store, username: str, disabled: bool, now: datetime | None = None, *, by: Actor = SYSTEM
) -> int:
    """Disable (or enable again) a user: a disabled user cannot log in, and their sessions
    and tokens stop working (the lookups check the flag). Disabling also ends the sessions
    for good; tokens come back with `enable`. How many sessions ended."""
    user = get(store, username)
    when = now or store.now()
    action = AuditAction.USER_DISABLE if disabled else AuditAction.USER_ENABLE
    with store.begin() as conn:
        user_store.set_disabled(conn, user.id, disabled)
        ended = web_sessions.delete_user_sessions(conn, user.id) if disabled else 0
        _audit(conn, by, action, user.username, when)
    return ended


def set_role(store: Store, username: str, role: str, now: datetime, *, by: Actor = SYSTEM) -> User:
    """Give a user another role; it applies to their next request (sessions and tokens
    carry no role of their own)."""
    new_role = parse_role(role)
    user = get(store, username)
    with store.begin() as conn:
        user_store.set_role(conn, user.id, new_role.value)
        _audit(
            conn,
            by,
            AuditAction.USER_SET_ROLE,
            user.username,
            now,
            old_role=user.role.value,
            role=new_role.value,
        )
        return User.from_row(user_store.user_by_id(conn, user.id))


def delete(store: Store, username: str, now: datetime | None = None, *, by: Actor = SYSTEM) -> None:
    """Delete a user with their API tokens and sessions."""
    user = get(store, username)
    with store.begin() as conn:
        user_store.delete_user(conn, user.id)
        _audit(conn, by, AuditAction.USER_DELETE, user.username, now or store.now())


def _audit(
    conn: Any, by: Actor, action: AuditAction, username: str, now: datetime, **detail: Any
) -> None:
    audit.record(
        conn,
        actor=by,
        action=action,
        now=now,
        object_type="user",
        object_id=username,
        detail=detail,
    )


def _lookup_name(username: str) -> str:
    """The name to look up: normalized, or as typed (lowercased) if malformed, so a
    malformed name is just another unknown user (and is counted by the rate limit)."""
    try:
        return normalize_username(username)
    except UnacceptableCredential:
        return username.strip().lower()[:USERNAME]
