"""What each role may do. Viewers read; operators also act on runs; admins do everything.

The web checks `require(role, action)` on the object a request acts on, so every route that
changes state names its `Action` and no route can forget the check silently.
"""

from __future__ import annotations

from enum import StrEnum

from drayman.exceptions import PermissionDenied, UnacceptableCredential


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"


class Action(StrEnum):
    READ = "read"  # every page and GET endpoint, logs included
    TRIGGER = "trigger"  # start a DAG run (with conf)
    CLEAR = "clear"  # clear a task or a run so it runs again
    MARK = "mark"  # mark a task or a run success or failed
    PAUSE = "pause"  # pause or unpause a DAG
    CANCEL = "cancel"  # stop a running try
    MANAGE_POOLS = "manage_pools"
    MANAGE_USERS = "manage_users"  # users, their roles and passwords, anybody's API tokens
    READ_AUDIT = "read_audit"  # the audit trail: who did what, from which address


_OPERATE = frozenset({Action.TRIGGER, Action.CLEAR, Action.MARK, Action.PAUSE, Action.CANCEL})

PERMISSIONS: dict[Role, frozenset[Action]] = {
    Role.VIEWER: frozenset({Action.READ}),
    Role.OPERATOR: frozenset({Action.READ}) | _OPERATE,
    Role.ADMIN: frozenset(Action),
}


def parse_role(text: str) -> Role:
    """A role from its name, or an error that lists the names."""
    try:
        return Role(text.strip().lower())
    except ValueError:
        names = ", ".join(r.value for r in Role)
        raise UnacceptableCredential(f"unknown role {text!r}; use one of: {names}") from None


def allows(role: Role | str, action: Action) -> bool:
    """Whether `role` may do `action`. An unknown role (a hand-edited row) may do nothing."""
    try:
        return action in PERMISSIONS[Role(role)]
    except ValueError:
        return False


def require(role: Role | str, action: Action) -> None:
    """Raise PermissionDenied unless `role` may do `action`."""
    if not allows(role, action):
        raise PermissionDenied(f"role {role!s} may not {action.value.replace('_', ' ')}")
