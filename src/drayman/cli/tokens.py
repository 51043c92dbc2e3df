"""`drayman tokens ...`: API tokens for scripts and CI, sent as `Authorization: Bearer TOKEN`.

`create` prints the token once: drayman keeps only its hash and cannot show it again.
A token acts with its user's role; it stays valid when the user's password changes, until
it is revoked or the user is deleted or disabled.
"""

from __future__ import annotations

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
from drayman.cli.users import policy_errors


@click.group("tokens")
def tokens() -> None:
    """Create, list and revoke API tokens."""


@tokens.command("create")
@click.option("--user", "username", required=True, help="The user the token acts as.")
@click.option("--name", required=True, help="What the token is for, e.g. 'ci-deploy'.")
@json_option
def create_token(username: str, name: str, as_json: bool) -> None:
    """Make a token and print it, once."""
    from drayman.auth import tokens as api_tokens

    store = open_store(load_settings())
    with policy_errors():
        new = api_tokens.create(store, username, name, store.now(), by=cli_actor())
    if as_json:
        print_json(
            {
                "id": new.id,
                "username": new.username,
                "name": new.name,
                "prefix": new.prefix,
                "token": new.token,
                "created_at": iso(new.created_at),
            }
        )
        return
    click.echo(new.token)
    click.echo(
        f"token {new.id} ({new.name}) for {new.username}: store it now, it is not shown again",
        err=True,
    )


@tokens.command("list")
@click.option("--user", "username", default=None, help="Only this user's tokens.")
@json_option
def list_tokens(username: str | None, as_json: bool) -> None:
    """Every token: its id, user, name, prefix, last use and revocation (never the token)."""
    from drayman.auth import tokens as api_tokens

    rows = api_tokens.list_tokens(open_store(load_settings()), username)
    if as_json:
        print_json(
            [
                {
                    "id": t.id,
                    "username": t.username,
                    "name": t.name,
                    "prefix": t.prefix,
                    "created_at": iso(t.created_at),
                    "last_used_at": iso(t.last_used_at),
                    "revoked_at": iso(t.revoked_at),
                }
                for t in rows
            ]
        )
        return
    print_table(
        ["id", "user", "name", "prefix", "created", "last used", "revoked"],
        [
            [
                t.id,
                t.username,
                t.name,
                t.prefix + "...",
                iso(t.created_at),
                iso(t.last_used_at),
                iso(t.revoked_at),
            ]
            for t in rows
        ],
    )


@tokens.command("revoke")
@click.argument("token_id", metavar="ID", type=int)
def revoke_token(token_id: int) -> None:
    """Revoke token ID for good (see `drayman tokens list` for ids)."""
    from drayman.auth import tokens as api_tokens

    store = open_store(load_settings())
    api_tokens.revoke(store, token_id, store.now(), by=cli_actor())
    click.echo(f"token {token_id} revoked")
