"""Users, logins and their rate limit, API tokens and web sessions on every database."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from drayman.auth import sessions, throttle, tokens, users
from drayman.auth.login_gate import LoginBusy, LoginGate
from drayman.auth.passwords import Passwords
from drayman.auth.roles import Role
from drayman.auth.throttle import LoginLimits
from drayman.exceptions import (
    ConflictError,
    InvalidCredentials,
    NotFoundError,
    TooManyAttempts,
)
from drayman.store import login_failures
from drayman.store.engine import Store, is_deadlock

if TYPE_CHECKING:
    from support.passwords import CountingPasswords

NOW = datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
ADDRESS = "192.0.2.10"
LIMITS = LoginLimits(per_user_address=3, per_username=5, window=timedelta(minutes=15))
OTHER_ADDRESS = "198.51.100.7"


@pytest.fixture(scope="module")
def passwords() -> Passwords:
    """Real argon2id with small costs: the schema and the flow are under test here."""
    return Passwords(memory_kib=256, time_cost=1, parallelism=1)


def make_user(
    store: Store, passwords: Passwords, name: str = "alice", role: str = "operator"
) -> users.User:
    return users.create(store, passwords, name, PASSWORD, role, NOW)


def login(
    store: Store,
    passwords: Passwords,
    name: str = "alice",
    password: str = PASSWORD,
    *,
    address: str = ADDRESS,
    at: datetime = NOW,
) -> users.User:
    return users.authenticate(store, passwords, name, password, address, at, LIMITS)


# ---------------------------------------------------------------- users


def test_create_and_get_a_user(store: Store, passwords: Passwords) -> None:
    created = make_user(store, passwords, "Alice", "viewer")

    got = users.get(store, "ALICE")
    assert got == created, f"get returned {got}, create returned {created}"
    assert (got.username, got.role, got.disabled) == ("alice", Role.VIEWER, False)
    assert got.created_at == NOW and got.password_changed_at == NOW
    assert got.created_at.tzinfo is not None, "times must come back timezone-aware"


def test_a_taken_username_is_a_conflict_whatever_its_case(
    store: Store, passwords: Passwords
) -> None:
    make_user(store, passwords, "alice")

    with pytest.raises(ConflictError, match="user 'alice' already exists"):
        make_user(store, passwords, "ALICE")
    assert [u.username for u in users.list_users(store)] == ["alice"]


def test_unknown_user_is_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError, match="no user 'nobody'"):
        users.get(store, "nobody")


def test_delete_removes_the_user_with_tokens_and_sessions(
    store: Store, passwords: Passwords
) -> None:
    user = make_user(store, passwords)
    token = tokens.create(store, "alice", "ci", NOW).token
    cookie = sessions.create(store, user, NOW).token

    users.delete(store, "alice")

    assert users.list_users(store) == []
    assert tokens.list_tokens(store) == [], "the deleted user's tokens are still listed"
    assert sessions.resolve(store, cookie, NOW) is None, "a deleted user's session still works"
    with pytest.raises(InvalidCredentials):
        tokens.verify(store, token, NOW)


# ---------------------------------------------------------------- login


def test_login_with_the_right_password(store: Store, passwords: Passwords) -> None:
    user = make_user(store, passwords)

    assert login(store, passwords, " Alice ") == user


def test_failed_logins_all_look_the_same(store: Store, passwords: Passwords) -> None:
    make_user(store, passwords)
    attempts = {
        "wrong password": ("alice", "wrong password"),
        "unknown user": ("mallory", PASSWORD),
        "malformed name": ("bad name!", PASSWORD),
    }
    for what, (name, password) in attempts.items():
        with pytest.raises(InvalidCredentials) as failure:
            login(store, passwords, name, password)
        assert str(failure.value) == "invalid username or password", f"{what}: {failure.value}"


def test_an_unknown_user_costs_a_password_check(store: Store) -> None:
    """No early return: the time of a login must not reveal whether the user exists."""

    class Counting(Passwords):
        calls = 0

        def verify(self, password_hash: str, password: str) -> bool:
            Counting.calls += 1
            return super().verify(password_hash, password)

    counting = Counting(memory_kib=256, time_cost=1, parallelism=1)
    with pytest.raises(InvalidCredentials):
        users.authenticate(store, counting, "mallory", PASSWORD, ADDRESS, NOW, LIMITS)
    assert Counting.calls == 1, "an unknown username skipped the argon2 check"


def test_a_disabled_user_cannot_log_in_and_loses_sessions_and_tokens(
    store: Store, passwords: Passwords
) -> None:
    user = make_user(store, passwords)
    token = tokens.create(store, "alice", "ci", NOW).token
    cookie = sessions.create(store, user, NOW).token

    users.set_disabled(store, "alice", True)

    with pytest.raises(InvalidCredentials):
        login(store, passwords)
    with pytest.raises(InvalidCredentials):
        tokens.verify(store, token, NOW)
    assert sessions.resolve(store, cookie, NOW) is None

    users.set_disabled(store, "alice", False)
    assert login(store, passwords).username == "alice"


def test_login_rehashes_a_password_hashed_with_older_parameters(
    store: Store, passwords: Passwords
) -> None:
    make_user(store, passwords)
    stronger = Passwords(memory_kib=512, time_cost=2, parallelism=1)

    login(store, stronger)

    with store.read() as conn:
        from drayman.store import users as user_store

        row = user_store.user_by_name(conn, "alice")
    assert row is not None and not stronger.needs_rehash(row.password_hash), (
        f"hash not upgraded on login: {row.password_hash if row else None}"
    )
    assert row.password_changed_at == NOW, "a rehash is not a password change"


# ---------------------------------------------------------------- rate limit


def fail(
    store: Store,
    passwords: Passwords,
    times: int,
    name: str = "alice",
    address: str = ADDRESS,
) -> None:
    for _ in range(times):
        with pytest.raises(InvalidCredentials):
            login(store, passwords, name, "wrong password", address=address)


def test_failures_from_one_address_lock_the_username_only_there(
    store: Store, passwords: Passwords
) -> None:
    make_user(store, passwords)
    fail(store, passwords, LIMITS.per_user_address)

    with pytest.raises(TooManyAttempts, match="try again in") as locked:
        login(store, passwords, at=NOW + timedelta(minutes=1))
    assert 0 < locked.value.retry_after_s <= 15 * 60
    assert login(store, passwords, address=OTHER_ADDRESS).username == "alice", (
        "a guesser at one address locked the user out of every address"
    )


def test_too_many_failures_lock_the_username_everywhere_even_for_the_right_password(
    store: Store, passwords: Passwords
) -> None:
    make_user(store, passwords)
    fail(store, passwords, LIMITS.per_user_address)
    fail(store, passwords, LIMITS.per_username - LIMITS.per_user_address, address=OTHER_ADDRESS)

    for address in (ADDRESS, OTHER_ADDRESS, "203.0.113.9"):
        with pytest.raises(TooManyAttempts):
            login(store, passwords, address=address, at=NOW + timedelta(minutes=1))

    after_window = NOW + LIMITS.window + timedelta(seconds=1)
    assert login(store, passwords, at=after_window).username == "alice", "the lock never ends"


def test_unknown_usernames_are_rate_limited_too(store: Store, passwords: Passwords) -> None:
    fail(store, passwords, LIMITS.per_user_address, "mallory")

    with pytest.raises(TooManyAttempts):
        login(store, passwords, "mallory", "anything")


@pytest.mark.slow
def test_failures_from_one_address_never_lock_out_everybody_behind_it(
    store: Store, passwords: Passwords
) -> None:
    """One proxy or NAT address serves a whole office: a guesser (or a broken script) there
    must not lock out every other user who logs in through it."""
    make_user(store, passwords)
    make_user(store, passwords, "bob")
    for index in range(20):
        fail(store, passwords, LIMITS.per_user_address, f"user{index}")

    assert login(store, passwords, "bob").username == "bob"
    assert login(store, passwords, "alice").username == "alice"


def test_concurrent_wrong_guesses_are_counted_atomically(
    store: Store, counting_passwords: CountingPasswords, passwords: Passwords
) -> None:
    """30 threads guess at once: exactly `per_user_address` passwords are checked; the rest
    are refused without a check (a count read before and written after would let all in)."""
    make_user(store, passwords)
    counting = counting_passwords
    start = threading.Barrier(30)
    outcomes: list[str] = []

    def guess() -> None:
        start.wait()
        try:
            users.authenticate(store, counting, "alice", "wrong guess", ADDRESS, NOW, LIMITS)
        except InvalidCredentials:
            outcomes.append("checked")
        except TooManyAttempts:
            outcomes.append("refused")

    threads = [threading.Thread(target=guess) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes).count("checked") == LIMITS.per_user_address, outcomes
    assert outcomes.count("refused") == 30 - LIMITS.per_user_address, outcomes
    assert counting.calls == LIMITS.per_user_address, "more passwords checked than the limit"


def test_a_full_login_gate_refuses_at_once_and_counts_nothing(
    store: Store, passwords: Passwords
) -> None:
    make_user(store, passwords)
    gate = LoginGate(2)

    with gate.slot(), gate.slot():
        assert gate.busy == 2
        with pytest.raises(LoginBusy, match="retry"):
            users.authenticate(store, passwords, "alice", "wrong", ADDRESS, NOW, LIMITS, gate)

    assert gate.busy == 0
    fail(store, passwords, LIMITS.per_user_address - 1)
    assert login(store, passwords).username == "alice", "a busy refusal was counted as a failure"


def test_unknown_users_are_hashed_inside_the_gate(store: Store) -> None:
    """The dummy hash for an unknown name takes a slot like a real check: a flood of
    made-up names is bounded too."""
    gate = LoginGate(1)
    seen: list[int] = []

    class Watching(Passwords):
        def waste_time(self, password: str) -> None:
            seen.append(gate.busy)
            super().waste_time(password)

    watching = Watching(memory_kib=256, time_cost=1, parallelism=1)
    with pytest.raises(InvalidCredentials):
        users.authenticate(store, watching, "nobody", "x" * 10, ADDRESS, NOW, LIMITS, gate)
    assert seen == [1], f"the dummy hash ran outside the gate: {seen}"


def counter_rows(store: Store) -> int:
    with store.read() as conn:
        return int(conn.exec_driver_sql("SELECT COUNT(*) FROM login_counter").scalar_one())


def test_counters_whose_window_ended_are_purged(store: Store, passwords: Passwords) -> None:
    """Made-up usernames from many addresses must not grow the table for good."""
    for index in range(10):
        fail(store, passwords, 1, f"ghost{index}", address=f"203.0.113.{index}")
    assert counter_rows(store) == 20  # a (user, address) and a user counter each

    later = NOW + LIMITS.window + timedelta(seconds=1)
    with pytest.raises(InvalidCredentials):
        login(store, passwords, "ghost0", "wrong password", address="203.0.113.0", at=later)

    assert counter_rows(store) == 2, "expired counters were kept"


def test_a_counter_purged_under_a_login_is_made_again_not_refused(store: Store) -> None:
    """A purge may delete a counter between a login's ensure and its reserve: the login
    then counts nothing and tries again (never a refusal, never a lost count)."""
    keys = throttle.counters("alice", ADDRESS)
    assert throttle._reserve_all(store, keys, NOW, LIMITS) is False
    assert counter_rows(store) == 0

    throttle.reserve(store, "alice", ADDRESS, NOW, LIMITS)
    with store.read() as conn:
        counts = conn.exec_driver_sql("SELECT failures FROM login_counter").scalars().all()
    assert counts == [1, 1]


def test_a_real_deadlock_is_recognized_for_a_retry(store: Store) -> None:
    """The throttle runs a transaction again only after a deadlock: two transactions that
    lock two counters in opposite orders make a real one here."""
    if store.dialect == "sqlite":
        pytest.skip("SQLite has one writer: no deadlocks")
    keys = [("user", "a"), ("user", "b")]
    for key in keys:
        with store.begin() as conn:
            login_failures.ensure(conn, key, NOW)
    both_hold_one = threading.Barrier(2)
    raised: list[BaseException] = []

    def lock(first: tuple[str, str], second: tuple[str, str]) -> None:
        try:
            with store.begin() as conn:
                login_failures.forget(conn, [first])
                both_hold_one.wait(timeout=30)
                login_failures.forget(conn, [second])
        except Exception as exc:  # the deadlock's victim
            raised.append(exc)

    threads = [
        threading.Thread(target=lock, args=(keys[0], keys[1])),
        threading.Thread(target=lock, args=(keys[1], keys[0])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(raised) == 1, f"expected one deadlock victim, got {raised}"
    assert is_deadlock(raised[0]), f"not recognized as a deadlock: {raised[0]!r}"
    assert not is_deadlock(ValueError("deadlock")), "only database errors are deadlocks"


def test_a_successful_login_forgets_the_usernames_failures(
    store: Store, passwords: Passwords
) -> None:
    make_user(store, passwords)
    fail(store, passwords, LIMITS.per_user_address - 1)
    login(store, passwords)

    fail(store, passwords, LIMITS.per_user_address - 1)
    assert login(store, passwords).username == "alice", "old failures still counted"


# ---------------------------------------------------------------- passwords and sessions


def test_set_password_ends_sessions_and_keeps_tokens(store: Store, passwords: Passwords) -> None:
    user = make_user(store, passwords)
    token = tokens.create(store, "alice", "ci", NOW).token
    cookies = [sessions.create(store, user, NOW).token for _ in range(2)]
    later = NOW + timedelta(minutes=5)

    ended = users.set_password(store, passwords, "alice", "new password here", later)

    assert ended == 2
    assert all(sessions.resolve(store, c, later) is None for c in cookies), "a session survived"
    assert tokens.verify(store, token, later).username == "alice", "the API token was revoked"
    assert users.get(store, "alice").password_changed_at == later
    with pytest.raises(InvalidCredentials):
        login(store, passwords, at=later)
    assert login(store, passwords, password="new password here", at=later).username == "alice"


def test_a_session_resolves_until_it_expires_or_is_revoked(
    store: Store, passwords: Passwords
) -> None:
    user = make_user(store, passwords)
    session = sessions.create(store, user, NOW, lifetime=timedelta(hours=1))

    assert session.expires_at == NOW + timedelta(hours=1)
    assert sessions.resolve(store, session.token, NOW + timedelta(minutes=59)) == user
    assert sessions.resolve(store, session.token, NOW + timedelta(hours=1)) is None, (
        "a session outlived its expiry"
    )
    assert sessions.resolve(store, session.token, NOW) == user

    sessions.revoke(store, session.token)
    assert sessions.resolve(store, session.token, NOW) is None, "logout did not end the session"


def test_unknown_session_tokens_resolve_to_nobody(store: Store, passwords: Passwords) -> None:
    make_user(store, passwords)

    for token in ["", "nope", "x" * 10_000]:
        assert sessions.resolve(store, token, NOW) is None


def test_only_the_hash_of_a_session_token_is_stored(store: Store, passwords: Passwords) -> None:
    session = sessions.create(store, make_user(store, passwords), NOW)

    with store.read() as conn:
        ids = [r[0] for r in conn.exec_driver_sql("SELECT id FROM web_session")]
    assert ids == [sessions.hash_session(session.token)] and session.token not in ids


def test_purge_deletes_only_expired_sessions(store: Store, passwords: Passwords) -> None:
    user = make_user(store, passwords)
    short = sessions.create(store, user, NOW, lifetime=timedelta(minutes=1)).token
    long = sessions.create(store, user, NOW, lifetime=timedelta(hours=1)).token

    assert sessions.purge_expired(store, NOW + timedelta(minutes=2)) == 1
    assert sessions.resolve(store, long, NOW) == user
    assert sessions.resolve(store, short, NOW) is None


def test_last_seen_is_written_at_most_once_a_minute(store: Store, passwords: Passwords) -> None:
    user = make_user(store, passwords)
    token = sessions.create(store, user, NOW).token

    def last_seen() -> datetime:
        with store.read() as conn:
            return conn.exec_driver_sql("SELECT last_seen_at FROM web_session").scalar_one()

    before = last_seen()
    sessions.resolve(store, token, NOW + timedelta(seconds=30))
    assert last_seen() == before, "a page view within a minute wrote last_seen_at"
    sessions.resolve(store, token, NOW + timedelta(minutes=2))
    assert last_seen() != before, "last_seen_at never moves"


# ---------------------------------------------------------------- API tokens


def test_a_token_is_shown_once_and_stored_as_a_hash(store: Store, passwords: Passwords) -> None:
    make_user(store, passwords)

    new = tokens.create(store, "alice", "ci-deploy", NOW)

    assert new.token.startswith("drm_") and len(new.token) > 40
    assert new.prefix == new.token[: len(new.prefix)]
    with store.read() as conn:
        stored = [tuple(r) for r in conn.exec_driver_sql("SELECT * FROM api_token")]
    assert not any(new.token in str(value) for row in stored for value in row), (
        "the plaintext token is in the database"
    )
    assert tokens.verify(store, new.token, NOW).username == "alice"


def test_a_token_acts_with_its_users_role(store: Store, passwords: Passwords) -> None:
    make_user(store, passwords, "viewer1", "viewer")
    token = tokens.create(store, "viewer1", "dashboards", NOW).token

    assert tokens.verify(store, token, NOW).role is Role.VIEWER


def test_unknown_tokens_are_refused(store: Store, passwords: Passwords) -> None:
    make_user(store, passwords)
    real = tokens.create(store, "alice", "ci", NOW).token

    for bad in ["", "drm_nope", real[4:], real + "x", "drm_" + "x" * 500]:
        with pytest.raises(InvalidCredentials, match="invalid API token"):
            tokens.verify(store, bad, NOW)


def test_a_revoked_token_is_refused_and_listed_as_revoked(
    store: Store, passwords: Passwords
) -> None:
    make_user(store, passwords)
    kept = tokens.create(store, "alice", "kept", NOW)
    gone = tokens.create(store, "alice", "gone", NOW)

    tokens.revoke(store, gone.id, NOW + timedelta(hours=1))

    with pytest.raises(InvalidCredentials):
        tokens.verify(store, gone.token, NOW + timedelta(hours=2))
    assert tokens.verify(store, kept.token, NOW).username == "alice"
    listed = {t.name: t for t in tokens.list_tokens(store)}
    assert listed["gone"].revoked_at == NOW + timedelta(hours=1)
    assert listed["kept"].revoked_at is None


def test_revoking_an_unknown_token_is_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError, match="no API token with id 999"):
        tokens.revoke(store, 999, NOW)


def test_token_for_an_unknown_user_is_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError, match="no user 'ghost'"):
        tokens.create(store, "ghost", "ci", NOW)


def test_list_tokens_by_user_and_last_use(store: Store, passwords: Passwords) -> None:
    make_user(store, passwords)
    make_user(store, passwords, "bob")
    mine = tokens.create(store, "alice", "a", NOW)
    tokens.create(store, "bob", "b", NOW)

    tokens.verify(store, mine.token, NOW + timedelta(minutes=3))
    tokens.verify(store, mine.token, NOW + timedelta(minutes=3, seconds=30))

    listed = tokens.list_tokens(store, "alice")
    assert [(t.username, t.name) for t in listed] == [("alice", "a")]
    assert listed[0].last_used_at == NOW + timedelta(minutes=3), "last_used_at not throttled"
    assert len(tokens.list_tokens(store)) == 2
