"""`drayman users` and `drayman tokens` through the real CLI: no default user, passwords only
from a prompt or stdin, a token printed once and never listed, exit codes that name the error.

Exit codes (see drayman.cli.main): 0 ok, 1 failed, 2 bad input, 3 not found, 4 conflict.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from support.cli import DRAYMAN, describe

if TYPE_CHECKING:
    from support.cli import Drayman

PASSWORD = "correct horse battery"


def with_stdin(drayman: Drayman, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(DRAYMAN), *args],
        env=drayman.env,
        cwd=drayman.root,
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    drayman.last = describe(proc)
    return proc


@pytest.fixture(scope="module")
def migrated(make_drayman: Callable[..., Drayman]) -> Drayman:
    """One migrated installation shared by the tests that need no empty one."""
    drayman = make_drayman("users")
    drayman.ok("db", "migrate")
    return drayman


def create(drayman: Drayman, name: str, role: str, password: str = PASSWORD) -> str:
    proc = with_stdin(
        drayman, password + "\n", "users", "create", name, "--role", role, "--password-stdin"
    )
    assert proc.returncode == 0, f"users create failed:\n{drayman.last}"
    return proc.stdout


@pytest.mark.slow
def test_users_lifecycle(drayman: Drayman) -> None:
    drayman.ok("db", "migrate")
    assert drayman.json("users", "list") == [], "a fresh installation must have no user"

    assert "user admin created with role admin" in create(drayman, "Admin", "admin")
    create(drayman, "viewer1", "viewer")

    listed = {u["username"]: u for u in drayman.json("users", "list")}
    assert {n: u["role"] for n, u in listed.items()} == {"admin": "admin", "viewer1": "viewer"}
    assert "password" not in json.dumps(listed).replace("password_changed_at", ""), (
        f"users list shows a password or hash:\n{drayman.last}"
    )

    again = with_stdin(
        drayman, PASSWORD + "\n", "users", "create", "ADMIN", "--role", "viewer", "--password-stdin"
    )
    assert again.returncode == 4, f"a duplicate user must be a conflict:\n{drayman.last}"
    assert "already exists" in again.stderr

    changed = with_stdin(
        drayman, "another long one\n", "users", "set-password", "admin", "--password-stdin"
    )
    assert changed.returncode == 0, drayman.last
    assert "password of admin changed; 0 web session(s) ended" in changed.stdout

    assert drayman.ok("users", "delete", "viewer1", "--yes").strip() == "user viewer1 deleted"
    assert [u["username"] for u in drayman.json("users", "list")] == ["admin"]


@pytest.mark.slow
def test_bad_input_and_unknown_users(migrated: Drayman) -> None:
    drayman = migrated

    short = with_stdin(
        drayman, "short\n", "users", "create", "bob", "--role", "admin", "--password-stdin"
    )
    assert short.returncode == 2, f"a short password must be bad input:\n{drayman.last}"
    assert "password too short" in short.stderr

    bad_role = with_stdin(
        drayman, PASSWORD + "\n", "users", "create", "bob", "--role", "root", "--password-stdin"
    )
    assert bad_role.returncode == 2 and "admin" in bad_role.stderr, drayman.last

    no_tty = with_stdin(drayman, "", "users", "create", "bob", "--role", "admin")
    assert no_tty.returncode == 2, f"no terminal and no --password-stdin:\n{drayman.last}"
    assert "--password-stdin" in no_tty.stderr

    for args in (
        ["users", "set-password", "ghost", "--password-stdin"],
        ["users", "delete", "ghost", "--yes"],
        ["tokens", "create", "--user", "ghost", "--name", "ci"],
        ["tokens", "revoke", "42"],
    ):
        proc = with_stdin(drayman, PASSWORD + "\n", *args)
        assert proc.returncode == 3, f"{' '.join(args)} must be not found:\n{drayman.last}"
        assert proc.stderr.startswith("error: no "), drayman.last


@pytest.mark.slow
def test_tokens_are_printed_once_and_revocable(migrated: Drayman) -> None:
    drayman = migrated
    create(drayman, "ci", "operator")

    plain = drayman.cli("tokens", "create", "--user", "ci", "--name", "deploy")
    assert plain.returncode == 0, drayman.last
    token = plain.stdout.strip()
    assert token.startswith("drm_") and "\n" not in token, f"stdout must be the token:\n{plain}"
    assert "not shown again" in plain.stderr

    made = drayman.json("tokens", "create", "--user", "ci", "--name", "backup")
    assert made["token"].startswith(made["prefix"]) and made["username"] == "ci"

    listed = drayman.json("tokens", "list")
    assert [(t["name"], t["revoked_at"]) for t in listed] == [("deploy", None), ("backup", None)]
    assert token not in drayman.last and made["token"] not in drayman.last, (
        "tokens list shows a token"
    )
    table = drayman.ok("tokens", "list")
    assert token not in table and token[:12] in table, f"the prefix is not shown:\n{table}"

    assert drayman.ok("tokens", "revoke", str(made["id"])).strip() == f"token {made['id']} revoked"
    revoked = {t["name"]: t["revoked_at"] for t in drayman.json("tokens", "list", "--user", "ci")}
    assert revoked["backup"] is not None and revoked["deploy"] is None, revoked


def test_users_and_tokens_are_in_the_help(migrated: Drayman) -> None:
    drayman = migrated
    top = drayman.ok("--help")
    assert "users" in top and "tokens" in top, top
    for group, subcommands in (
        ("users", ["create", "delete", "list", "set-password"]),
        ("tokens", ["create", "list", "revoke"]),
    ):
        text = drayman.ok(group, "--help")
        for sub in subcommands:
            assert f"  {sub} " in text, f"`drayman {group} --help` lacks {sub}:\n{text}"
