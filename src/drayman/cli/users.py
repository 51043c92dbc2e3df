"""`drayman users ...`: the people (and robots) who may use the web UI and the API.

There is no default user: the first admin is `drayman users create NAME --role admin`.
Passwords are prompted twice on a terminal, or read from stdin with `--password-stdin`
(one line), never taken as an argument, where `ps` and shell history would show them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from drayman.cli.common import (
    cli_actor,
    iso,
    json_option,
    load_settings,
    open_store,
    print_json,
    print_table,
)
from drayman.cli.errors import BadInput

ROLES = ["admin", "operator", "viewer"]

password_stdin_option = click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of stdin instead of prompting.",
)


@click.group("users")
def users() -> None:
    """Create, list, disable and delete users; set their passwords and roles."""


@users.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the user may do.")
@password_stdin_option
@json_option
def create_user(username: str, role: str, password_stdin: bool, as_json: bool) -> None:
    """Create USERNAME with a ROLE: viewer reads, operator also triggers, clears, marks and
    pauses, admin does everything (users included)."""
    from drayman.auth import users as accounts
    from drayman.auth.passwords import Passwords

    password = read_password(password_stdin)
    store = open_store(load_settings())
    with policy_errors():
        user = accounts.create(
            store, Passwords(), username, password, role, store.now(), by=cli_actor()
        )
    if as_json:
        print_json(user_document(user))
    else:
        click.echo(f"user {user.username} created with role {user.role}")


@users.command("list")
@json_option
def list_users(as_json: bool) -> None:
    """Every user with their role and when their password last changed."""
    from drayman.auth import users as accounts

    rows = accounts.list_users(open_store(load_settings()))
    if as_json:
        print_json([user_document(u) for u in rows])
        return
    print_table(
        ["username", "role", "created", "password changed", "disabled"],
        [
            [u.username, u.role, iso(u.created_at), iso(u.password_changed_at), u.disabled]
            for u in rows
        ],
    )


@users.command("set-password")
@click.argument("username")
@password_stdin_option
def set_password(username: str, password_stdin: bool) -> None:
    """Set USERNAME's password; their web sessions end (API tokens stay valid)."""
    from drayman.auth import users as accounts
    from drayman.auth.passwords import Passwords

    store = open_store(load_settings())
    accounts.get(store, username)  # an unknown user fails before the prompt, not after
    password = read_password(password_stdin)
    with policy_errors():
        ended = accounts.set_password(
            store, Passwords(), username, password, store.now(), by=cli_actor()
        )
    click.echo(f"password of {username.strip().lower()} changed; {ended} web session(s) ended")


@users.command("delete")
@click.argument("username")
@click.option("--yes", is_flag=True, help="Do not ask first (a script with no terminal never is).")
def delete_user(username: str, yes: bool) -> None:
    """Delete USERNAME with their API tokens and web sessions."""
    from drayman.auth import users as accounts

    store = open_store(load_settings())
    user = accounts.get(store, username)
    if not yes and sys.stdin.isatty():
        click.confirm(f"delete user {user.username} and their API tokens?", abort=True, err=True)
    accounts.delete(store, user.username, store.now(), by=cli_actor())
    click.echo(f"user {user.username} deleted")


@users.command("set-role")
@click.argument("username")
@click.argument("role", type=click.Choice(ROLES))
def set_role(username: str, role: str) -> None:
    """Give USERNAME another ROLE; it applies to their next request, sessions and tokens too."""
    from drayman.auth import users as accounts

    store = open_store(load_settings())
    before = accounts.get(store, username)
    user = accounts.set_role(store, username, role, store.now(), by=cli_actor())
    click.echo(f"user {user.username}: role {before.role} -> {user.role}")


@users.command("disable")
@click.argument("username")
def disable_user(username: str) -> None:
    """Stop USERNAME from logging in; their web sessions end and their API tokens stop
    working (until `enable`). Nothing is deleted."""
    from drayman.auth import users as accounts

    store = open_store(load_settings())
    user = accounts.get(store, username)
    ended = accounts.set_disabled(store, user.username, True, store.now(), by=cli_actor())
    click.echo(f"user {user.username} disabled; {ended} web session(s) ended")


@users.command("enable")
@click.argument("username")
def enable_user(username: str) -> None:
    """Let a disabled USERNAME log in again; their unrevoked API tokens work again."""
    from drayman.auth import users as accounts

    store = open_store(load_settings())
    user = accounts.get(store, username)
    accounts.set_disabled(store, user.username, False, store.now(), by=cli_actor())
    click.echo(f"user {user.username} enabled")


def read_password(from_stdin: bool) -> str:
    """The new password: one line of stdin, or typed twice at a terminal."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise BadInput("no terminal to prompt for the password on; use --password-stdin")
    password: str = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    return password


@contextmanager
def policy_errors() -> Iterator[None]:
    """A refused username, password or name is bad input (exit code 2)."""
    from drayman.exceptions import UnacceptableCredential

    try:
        yield
    except UnacceptableCredential as exc:
        raise BadInput(str(exc)) from exc


def user_document(user: Any) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "role": str(user.role),
        "created_at": iso(user.created_at),
        "password_changed_at": iso(user.password_changed_at),
        "disabled": user.disabled,
    }
