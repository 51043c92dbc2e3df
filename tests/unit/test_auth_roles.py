"""What each role may do: viewer reads, operator acts on runs and DAGs, admin does all."""

from __future__ import annotations

import pytest

from drayman.auth.roles import Action, Role, allows, parse_role, require
from drayman.exceptions import PermissionDenied, UnacceptableCredential

OPERATE = {Action.TRIGGER, Action.CLEAR, Action.MARK, Action.PAUSE, Action.CANCEL}
EXPECTED = {
    Role.VIEWER: {Action.READ},
    Role.OPERATOR: {Action.READ} | OPERATE,
    Role.ADMIN: set(Action),
}


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("action", list(Action))
def test_permission_matrix(role: Role, action: Action) -> None:
    expected = action in EXPECTED[role]
    assert allows(role, action) is expected, (
        f"{role} {'should' if expected else 'must not'} be allowed to {action}"
    )


def test_viewer_cannot_trigger_clear_mark_or_pause() -> None:
    for action in (Action.TRIGGER, Action.CLEAR, Action.MARK, Action.PAUSE):
        with pytest.raises(PermissionDenied, match=f"role viewer may not {action.value}"):
            require(Role.VIEWER, action)


def test_only_admin_manages_users() -> None:
    require(Role.ADMIN, Action.MANAGE_USERS)
    with pytest.raises(PermissionDenied, match="may not manage users"):
        require(Role.OPERATOR, Action.MANAGE_USERS)


def test_an_unknown_role_string_may_do_nothing() -> None:
    assert not allows("superuser", Action.READ)


def test_parse_role_names_the_choices() -> None:
    assert parse_role(" Admin ") is Role.ADMIN
    with pytest.raises(UnacceptableCredential, match="admin, operator, viewer"):
        parse_role("root")
