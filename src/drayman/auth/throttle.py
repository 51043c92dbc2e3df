"""The login rate limit: after too many failures in a window, logins wait.

Two counters, because attackers come in two shapes: one address guessing many usernames'
passwords (`per_address`), and many addresses guessing one user's password (`per_username`).
While a counter is full every login it covers is refused, even with the right password, so a
guess that happens to be right teaches the attacker nothing. The price: somebody who fails on
purpose can lock a username out for `window` (logins from its usual address then fail too); an
API token keeps working meanwhile. A successful login forgets the username's failures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection

from drayman.exceptions import TooManyAttempts
from drayman.store import login_failures


@dataclass(frozen=True)
class LoginLimits:
    per_username: int = 10
    per_address: int = 50
    window: timedelta = timedelta(minutes=15)


def check(
    conn: Connection, username: str, address: str, now: datetime, limits: LoginLimits
) -> None:
    """Raise TooManyAttempts (with how long to wait) if either counter is full."""
    since = now - limits.window
    for key, limit in (("username", limits.per_username), ("address", limits.per_address)):
        count, oldest = login_failures.count_since(
            conn, since, **{key: _key(key, username, address)}
        )
        if count >= limit and oldest is not None:
            wait = math.ceil((oldest + limits.window - now).total_seconds())
            raise TooManyAttempts(
                f"too many failed logins; try again in {max(wait, 1)} s", max(wait, 1)
            )


def record_failure(
    conn: Connection, username: str, address: str, now: datetime, limits: LoginLimits
) -> None:
    """Count a failure; drop failures that fell out of the window so the table stays small."""
    login_failures.purge_before(conn, now - limits.window)
    login_failures.record(conn, username, address, now)


def record_success(conn: Connection, username: str) -> None:
    login_failures.clear_username(conn, username)


def _key(key: str, username: str, address: str) -> str:
    return username if key == "username" else address
