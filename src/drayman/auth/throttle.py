"""The login rate limit: after too many failures in a window, logins wait.

Two counters per login, because guessing comes in two shapes:

- `per_user_address`: one username from one client address (the usual single guesser). Small,
  and it locks only that pair: the user still logs in from anywhere else.
- `per_username`: one username from every address (guessing spread over a botnet). Larger;
  while it is full the username is refused everywhere, even with the right password, so a
  right guess teaches nothing. The price: somebody who fails on purpose that often can lock a
  username out for `window`; the user's API tokens keep working meanwhile.

There is deliberately NO per-address counter: behind a proxy or a NAT a whole office shares
one address, and a per-address lock would let one person (or one typo-prone script) lock out
everybody there. Spraying one address over many usernames is bounded by each username's
counters and, for the CPU, by the gate on password checks (`auth.login_gate`).

Atomic: an attempt is counted (reserved) before its password is checked, by one guarded
UPDATE per counter (`store.login_failures.reserve`), both in one transaction: of thirty
concurrent wrong guesses exactly `per_user_address` are checked, the rest refused. A
successful login gives the user's counters back (they start again at zero). Windows are
fixed, from the first failure: a counter whose window has ended starts again at 1. The first
refusal of a full counter marks it (`first_refusal`): only that one is audited.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from drayman.exceptions import TooManyAttempts
from drayman.store import login_failures
from drayman.store.engine import Connection, Store, is_deadlock
from drayman.store.login_failures import CounterKey

ATTEMPTS = 5  # a reservation runs again after a deadlock or a vanished counter


@dataclass(frozen=True)
class LoginLimits:
    per_user_address: int = 5
    per_username: int = 20
    window: timedelta = timedelta(minutes=15)


def counters(username: str, address: str) -> list[CounterKey]:
    """The counters of a login, in the order they are locked (always the same order)."""
    return [("pair", f"{username} {address}"), ("user", username)]


def reserve(store: Store, username: str, address: str, now: datetime, limits: LoginLimits) -> None:
    """Count this attempt as a failure until it succeeds, or raise TooManyAttempts (with how
    long to wait) and count nothing."""
    keys = counters(username, address)
    _purge(store, now - limits.window)
    for _ in range(ATTEMPTS):
        try:
            if _reserve_all(store, keys, now, limits):
                return
            for key in keys:  # new, or just purged: make it, then reserve again
                with store.begin() as conn:
                    login_failures.ensure(conn, key, now)
        except Exception as exc:
            if not is_deadlock(exc):
                raise
            # rolled back, nothing counted: run it again (MySQL's own advice)
    raise RuntimeError(
        f"login counters of {username!r}: no reservation after {ATTEMPTS} attempts "
        "(deadlocks, or something deleting them)"
    )


def _purge(store: Store, ended_before: datetime) -> None:
    """Drop a batch of counters that mean nothing any more. Housekeeping: a deadlock here
    skips it (the next login purges), it never fails a login."""
    try:
        with store.begin() as conn:
            login_failures.purge(conn, ended_before)
    except Exception as exc:
        if not is_deadlock(exc):
            raise


def _reserve_all(store: Store, keys: list[CounterKey], now: datetime, limits: LoginLimits) -> bool:
    """Reserve every counter in one transaction (a refusal raises and rolls it all back);
    False, with nothing counted, if a counter row had disappeared."""
    try:
        with store.begin() as conn:
            for key, limit in zip(
                keys, (limits.per_user_address, limits.per_username), strict=True
            ):
                if not login_failures.reserve(conn, key, limit, now - limits.window, now):
                    raise _refusal(conn, key, now, limits)
    except _Vanished:
        return False
    return True


class _Vanished(Exception):
    """A counter row is missing: new, or purged (rolls the reservation back)."""


def _refusal(conn: Connection, key: CounterKey, now: datetime, limits: LoginLimits) -> Exception:
    started = login_failures.window_start(conn, key)
    if started is None:
        return _Vanished()
    wait = max(math.ceil((started + limits.window - now).total_seconds()), 1)
    return TooManyAttempts(f"too many failed logins; try again in {wait} s", wait)


def first_refusal(
    store: Store, username: str, address: str, now: datetime, limits: LoginLimits
) -> bool:
    """Whether this refused login is the first its full counter refused in this window: the
    one worth an audit event. Later refusals check no password and write nothing, so an
    unauthenticated client cannot grow the audit table at its request rate. A deadlock here
    answers False: a refusal left unaudited is the cheaper mistake."""
    limits_of = (limits.per_user_address, limits.per_username)
    try:
        with store.begin() as conn:
            marked = [
                login_failures.mark_refusal(conn, key, limit, now - limits.window)
                for key, limit in zip(counters(username, address), limits_of, strict=True)
            ]
    except Exception as exc:
        if not is_deadlock(exc):
            raise
        return False
    return any(marked)


def record_success(conn: Connection, username: str, address: str) -> None:
    """Forget the user's failures: the reservation of this login and any before it."""
    login_failures.forget(conn, counters(username, address))
