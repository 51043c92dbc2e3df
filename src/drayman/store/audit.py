"""The audit trail: who did what, when, from where, to which object.

`record(conn, ...)` writes one event in the caller's transaction, so an action that is a
store write and its audit event commit or roll back together. Events are kept for good (no
pruning yet); `login_counter` is the short-lived table of the login rate limit.

Who: `Actor(name, source)`: a web user's username and client address, or the CLI's OS user
and "cli". What: an `AuditAction` (`<object>.<verb>`, the event names logs and metrics reuse).
`detail` is a small JSON object; keys that name a secret are refused outright, so a password
or a token cannot reach the table by a careless `detail=dict(body)`.

Issue 13 adds deploys here: a `DEPLOY_*` action with object_type "bundle" recorded in the
deploy's transaction, and the token that made it as `detail["token_id"]`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, insert, select

from drayman.store.rows import all_as
from drayman.store.schema import USERNAME, audit_event


@dataclass(frozen=True, slots=True)
class AuditEventRow:
    """An `audit_event` row: who did what to which object, when, from where."""

    id: int
    created_at: datetime
    actor: str
    source: str
    action: str
    object_type: str
    object_id: str
    detail: str


MAX_DETAIL = 4000  # characters of JSON: a detail is a summary, never a payload
CONF_KEYS_KEPT = 50  # of a triggered run's conf keys, the first (sorted) this many ...
CONF_KEY_CHARS = 64  # ... each cut to this many characters ...
_CONF_KEYS_BUDGET = 2000  # ... while their JSON fits in this many characters
_SECRET_WORDS = ("password", "secret", "token_value", "api_token", "cookie")


class AuditAction(StrEnum):
    LOGIN_SUCCESS = "login.success"
    LOGIN_FAILURE = "login.failure"  # detail.reason: "invalid" | "throttled"
    DAG_TRIGGER = "dag.trigger"
    DAG_BACKFILL = "dag.backfill"
    DAG_PAUSE = "dag.pause"
    DAG_UNPAUSE = "dag.unpause"
    RUN_CLEAR = "run.clear"
    TASK_CLEAR = "task.clear"
    TASK_MARK = "task.mark"
    TASK_CANCEL = "task.cancel"
    USER_CREATE = "user.create"
    USER_DELETE = "user.delete"
    USER_SET_PASSWORD = "user.set_password"
    USER_SET_ROLE = "user.set_role"
    USER_DISABLE = "user.disable"
    USER_ENABLE = "user.enable"
    TOKEN_CREATE = "token.create"
    TOKEN_REVOKE = "token.revoke"
    POOL_SET = "pool.set"


@dataclass(frozen=True)
class Actor:
    """Who acts: `name` (a username; the OS user for the CLI) and `source` (the client's
    address; "cli")."""

    name: str
    source: str


SYSTEM = Actor("system", "internal")  # drayman itself, or a caller that named nobody


def record(
    conn: Connection,
    *,
    actor: Actor,
    action: AuditAction,
    now: datetime,
    object_type: str = "",
    object_id: str = "",
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Write one audit event in the caller's transaction."""
    conn.execute(
        insert(audit_event).values(
            created_at=now,
            actor=actor.name[:USERNAME],
            source=actor.source[:64],
            action=action.value,
            object_type=object_type,
            object_id=object_id[:1000],
            detail=_detail_json(detail or {}),
        )
    )


@dataclass(frozen=True)
class Event:
    """An audit event described before its action runs, recorded by whoever runs it (the
    web's and the CLI's shared "apply an action" steps), with what the action changed."""

    actor: Actor
    action: AuditAction
    object_type: str
    object_id: str
    detail: Mapping[str, Any] = field(default_factory=dict)


def record_event(conn: Connection, event: Event, now: datetime, **more: Any) -> None:
    """Record `event`, its detail extended by `more` (e.g. how many task instances changed)."""
    record(
        conn,
        actor=event.actor,
        action=event.action,
        now=now,
        object_type=event.object_type,
        object_id=event.object_id,
        detail={**event.detail, **more},
    )


def run_object(dag_id: str, run_id: str, task_id: str | None = None) -> tuple[str, str]:
    """(object_type, object_id) of a run, or of a task of a run: "dag/run" or "dag/run/task"."""
    if task_id is None:
        return "run", f"{dag_id}/{run_id}"
    return "task", f"{dag_id}/{run_id}/{task_id}"


def record_trigger(
    conn: Connection, actor: Actor, dag_id: str, run_id: str, conf: Mapping[str, Any], now: datetime
) -> None:
    """A manual run was created. Only the conf's keys are kept (its values may be secret), and
    only a bounded summary of them: a conf the conf checks accept (600 keys, one 5000-character
    key) must not make the trigger fail on its audit row."""
    record(
        conn,
        actor=actor,
        action=AuditAction.DAG_TRIGGER,
        now=now,
        object_type="run",
        object_id=f"{dag_id}/{run_id}",
        detail={"conf_keys": conf_keys_summary(conf), "conf_key_count": len(conf)},
    )


def conf_keys_summary(conf: Mapping[str, Any]) -> list[str]:
    """The first `CONF_KEYS_KEPT` sorted keys of `conf`, each cut to `CONF_KEY_CHARS`, as many
    as fit `_CONF_KEYS_BUDGET` characters of JSON (a key of escaped characters is 6x longer)."""
    kept: list[str] = []
    used = 0
    for key in sorted(conf)[:CONF_KEYS_KEPT]:
        short = str(key)[:CONF_KEY_CHARS]
        used += len(json.dumps(short)) + 2
        if used > _CONF_KEYS_BUDGET:
            break
        kept.append(short)
    return kept


def record_pause(conn: Connection, actor: Actor, dag_id: str, paused: bool, now: datetime) -> None:
    action = AuditAction.DAG_PAUSE if paused else AuditAction.DAG_UNPAUSE
    record(conn, actor=actor, action=action, now=now, object_type="dag", object_id=dag_id)


def _detail_json(detail: Mapping[str, Any]) -> str:
    for key in detail:
        if any(word in key.lower() for word in _SECRET_WORDS):
            raise ValueError(f"audit detail key {key!r} looks like a secret: never record one")
    text = json.dumps(dict(detail), sort_keys=True, default=str)
    if len(text) > MAX_DETAIL:
        # Never fail the action for its audit row: keep what was too long, and how long.
        keys = [str(key)[:CONF_KEY_CHARS] for key in sorted(detail)[:10]]
        text = json.dumps({"detail_truncated": True, "detail_chars": len(text), "keys": keys})
    return text


def events(
    conn: Connection,
    *,
    actor: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[AuditEventRow]:
    """Events newest first, filtered by actor, action (exact, or a prefix ending in "."
    such as "user."), and a time range [since, until)."""
    query = select(audit_event).order_by(audit_event.c.created_at.desc(), audit_event.c.id.desc())
    if actor is not None:
        query = query.where(audit_event.c.actor == actor)
    if action is not None:
        column = audit_event.c.action
        query = query.where(
            column.startswith(action, autoescape=True) if action.endswith(".") else column == action
        )
    if since is not None:
        query = query.where(audit_event.c.created_at >= since)
    if until is not None:
        query = query.where(audit_event.c.created_at < until)
    return all_as(AuditEventRow, conn.execute(query.limit(limit).offset(offset)))


def as_document(row: AuditEventRow) -> dict[str, Any]:
    """One event as JSON-ready data (the API's and `drayman audit list --json`'s shape)."""
    return {
        "id": row.id,
        "created_at": row.created_at.isoformat(),
        "actor": row.actor,
        "source": row.source,
        "action": row.action,
        "object_type": row.object_type,
        "object_id": row.object_id,
        "detail": json.loads(row.detail),
    }
