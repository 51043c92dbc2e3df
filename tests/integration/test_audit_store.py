"""The audit trail on every database: what is recorded, by whom, and never a secret."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from drayman.auth import tokens, users
from drayman.auth.passwords import Passwords
from drayman.auth.throttle import LoginLimits
from drayman.exceptions import InvalidCredentials, TooManyAttempts
from drayman.store import audit
from drayman.store.audit import Actor, AuditAction
from drayman.store.engine import Store

NOW = datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
ADMIN = Actor("root-admin", "cli")
LIMITS = LoginLimits(per_user_address=2, per_username=4)


@pytest.fixture(scope="module")
def passwords() -> Passwords:
    return Passwords(memory_kib=256, time_cost=1, parallelism=1)


def events(store: Store, **filters: object) -> list[dict[str, object]]:
    with store.read() as conn:
        return [audit.as_document(r) for r in audit.events(conn, **filters)]


def summary(store: Store, **filters: object) -> list[tuple[object, ...]]:
    return [
        (e["actor"], e["source"], e["action"], e["object_type"], e["object_id"])
        for e in events(store, **filters)
    ]


def dump(store: Store) -> str:
    with store.read() as conn:
        return json.dumps(
            [list(r) for r in conn.exec_driver_sql("SELECT * FROM audit_event")], default=str
        )


def test_events_filter_by_actor_action_family_and_time(store: Store) -> None:
    with store.begin() as conn:
        for minute, (who, action) in enumerate(
            [
                ("alice", AuditAction.DAG_TRIGGER),
                ("bob", AuditAction.TASK_CLEAR),
                ("alice", AuditAction.USER_CREATE),
                ("alice", AuditAction.USER_DISABLE),
            ]
        ):
            audit.record(
                conn,
                actor=Actor(who, "192.0.2.1"),
                action=action,
                now=NOW + timedelta(minutes=minute),
                object_type="dag",
                object_id="d",
                detail={"n": minute},
            )

    newest_first = [e["action"] for e in events(store)]
    assert newest_first == ["user.disable", "user.create", "task.clear", "dag.trigger"]
    assert [e["action"] for e in events(store, actor="bob")] == ["task.clear"]
    assert [e["action"] for e in events(store, action="user.")] == ["user.disable", "user.create"]
    assert [e["action"] for e in events(store, action="user")] == [], "a bare word is exact"
    window = events(store, since=NOW + timedelta(minutes=1), until=NOW + timedelta(minutes=3))
    assert [e["action"] for e in window] == ["user.create", "task.clear"]
    assert [e["detail"] for e in events(store, limit=1, offset=1)] == [{"n": 2}]
    first = events(store)[-1]
    assert first["created_at"] == NOW.isoformat() and first["source"] == "192.0.2.1"


def test_an_event_is_part_of_its_actions_transaction(store: Store) -> None:
    with pytest.raises(RuntimeError), store.begin() as conn:
        audit.record(conn, actor=ADMIN, action=AuditAction.DAG_PAUSE, now=NOW)
        raise RuntimeError("the action failed after recording")

    assert events(store) == [], "a rolled-back action left an audit event"


def test_a_detail_that_names_a_secret_is_refused(store: Store) -> None:
    for key in ("password", "new_password", "client_secret", "api_token", "Cookie"):
        with pytest.raises(ValueError, match="looks like a secret"), store.begin() as conn:
            audit.record(
                conn, actor=ADMIN, action=AuditAction.USER_CREATE, now=NOW, detail={key: 1}
            )
    assert events(store) == []


def test_a_detail_too_long_is_cut_never_fails_the_action(store: Store) -> None:
    with store.begin() as conn:
        audit.record(
            conn, actor=ADMIN, action=AuditAction.USER_CREATE, now=NOW, detail={"x": "y" * 5000}
        )

    (event,) = events(store)
    assert event["detail"] == {"detail_truncated": True, "detail_chars": 5009, "keys": ["x"]}


@pytest.mark.parametrize(
    ("conf", "kept"),
    [
        ({f"k{i:05d}": 1 for i in range(600)}, 50),
        ({"k" * 5000: 1}, 1),
        ({"\u2603" * 64 + str(i): 1 for i in range(60)}, 5),
    ],
    ids=["600 keys", "one 5000-char key", "escaped keys"],
)
def test_a_trigger_records_a_bounded_summary_of_any_conf(
    store: Store, conf: dict[str, int], kept: int
) -> None:
    """The conf checks bound a conf's bytes, not its keys: its audit row must fit anyway."""
    with store.begin() as conn:
        audit.record_trigger(conn, ADMIN, "d", "r", conf, NOW)

    (event,) = events(store)
    assert event["detail"]["conf_key_count"] == len(conf)  # type: ignore[index]
    keys = event["detail"]["conf_keys"]  # type: ignore[index]
    assert len(keys) == kept
    assert all(len(key) <= audit.CONF_KEY_CHARS for key in keys)
    assert keys == [key[: audit.CONF_KEY_CHARS] for key in sorted(conf)[:kept]]


def test_logins_are_recorded_with_their_address_and_never_the_password(
    store: Store, passwords: Passwords
) -> None:
    users.create(store, passwords, "alice", PASSWORD, "viewer", NOW, by=ADMIN)

    users.authenticate(store, passwords, "Alice", PASSWORD, "198.51.100.1", NOW, LIMITS)
    for _ in range(LIMITS.per_user_address):
        with pytest.raises(InvalidCredentials):
            users.authenticate(
                store, passwords, "alice", "bad guess 1", "198.51.100.2", NOW, LIMITS
            )
    with pytest.raises(TooManyAttempts):
        users.authenticate(store, passwords, "alice", "bad guess 2", "198.51.100.2", NOW, LIMITS)
    with pytest.raises(InvalidCredentials):
        users.authenticate(store, passwords, "nobody", "bad guess 3", "198.51.100.3", NOW, LIMITS)

    logins = events(store, action="login.")
    assert [(e["actor"], e["source"], e["action"], e["detail"]) for e in reversed(logins)] == [
        ("alice", "198.51.100.1", "login.success", {}),
        ("alice", "198.51.100.2", "login.failure", {"reason": "invalid"}),
        ("alice", "198.51.100.2", "login.failure", {"reason": "invalid"}),
        ("alice", "198.51.100.2", "login.failure", {"reason": "throttled"}),
        ("nobody", "198.51.100.3", "login.failure", {"reason": "invalid"}),
    ]
    table = dump(store)
    for secret in (PASSWORD, "bad guess"):
        assert secret not in table, f"a password reached the audit table: {table}"


def test_a_throttled_login_is_recorded_once_per_window_and_counter(
    store: Store, passwords: Passwords
) -> None:
    """Throttled logins check no password: a client repeating one must not write a row each."""
    users.create(store, passwords, "carol", PASSWORD, "viewer", NOW, by=ADMIN)

    def attempt(address: str, at: datetime = NOW) -> None:
        with pytest.raises((InvalidCredentials, TooManyAttempts)):
            users.authenticate(store, passwords, "carol", "wrong", address, at, LIMITS)

    for _ in range(LIMITS.per_user_address + 5):
        attempt("192.0.2.1")  # 2 checked, 5 throttled by the (user, address) counter
    for _ in range(LIMITS.per_user_address + 3):
        attempt("192.0.2.2")  # 2 checked (the user's counter is full now), 3 throttled
    for _ in range(3):
        attempt("192.0.2.3")  # throttled by the user's counter
    attempt("192.0.2.1", NOW + LIMITS.window + timedelta(seconds=1))  # a new window: checked
    attempt("192.0.2.3", NOW + LIMITS.window + timedelta(seconds=1))

    logins = [
        (e["source"], e["detail"]["reason"]) for e in reversed(events(store, action="login."))
    ]  # type: ignore[index]
    assert logins == [
        ("192.0.2.1", "invalid"),
        ("192.0.2.1", "invalid"),
        ("192.0.2.1", "throttled"),
        ("192.0.2.2", "invalid"),
        ("192.0.2.2", "invalid"),
        ("192.0.2.2", "throttled"),  # the user's counter, first refusal: once for both keys
        ("192.0.2.1", "invalid"),
        ("192.0.2.3", "invalid"),
    ]


def test_user_and_token_changes_are_recorded_without_the_token(
    store: Store, passwords: Passwords
) -> None:
    users.create(store, passwords, "bob", PASSWORD, "viewer", NOW, by=ADMIN)
    users.set_role(store, "bob", "operator", NOW, by=ADMIN)
    users.set_password(store, passwords, "bob", "another password", NOW, by=ADMIN)
    new = tokens.create(store, "bob", "ci", NOW, by=ADMIN)
    tokens.revoke(store, new.id, NOW, by=ADMIN)
    users.set_disabled(store, "bob", True, NOW, by=ADMIN)
    users.set_disabled(store, "bob", False, NOW, by=ADMIN)
    users.delete(store, "bob", NOW, by=ADMIN)

    assert [s for s in reversed(summary(store))] == [
        ("root-admin", "cli", "user.create", "user", "bob"),
        ("root-admin", "cli", "user.set_role", "user", "bob"),
        ("root-admin", "cli", "user.set_password", "user", "bob"),
        ("root-admin", "cli", "token.create", "token", str(new.id)),
        ("root-admin", "cli", "token.revoke", "token", str(new.id)),
        ("root-admin", "cli", "user.disable", "user", "bob"),
        ("root-admin", "cli", "user.enable", "user", "bob"),
        ("root-admin", "cli", "user.delete", "user", "bob"),
    ]
    role_change = events(store, action="user.set_role")[0]["detail"]
    assert role_change == {"old_role": "viewer", "role": "operator"}
    table = dump(store)
    assert new.token not in table and new.token[len(new.prefix) :] not in table
    assert "another password" not in table and PASSWORD not in table
