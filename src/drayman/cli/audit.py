"""`drayman audit list`: who did what, when, from where (logins, run actions, users, tokens).

The CLI reads the database directly, so whoever may run it is an admin already (see
docs/security.md); the web's `GET /api/v1/audit` is for admins only.
"""

from __future__ import annotations

import json

import click

from drayman.cli.common import (
    iso,
    json_option,
    load_settings,
    open_store,
    parse_when,
    print_json,
    print_table,
)


@click.group("audit")
def audit() -> None:
    """Read the audit trail."""


@audit.command("list")
@click.option("--actor", help="Only events by this username (or OS user, for the CLI).")
@click.option(
    "--action", help='Only this action, e.g. "task.clear", or a family ending in ".": "user.".'
)
@click.option("--since", help="Only events at or after this time (ISO 8601; naive is UTC).")
@click.option("--until", help="Only events before this time (ISO 8601; naive is UTC).")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@json_option
def list_events(
    actor: str | None,
    action: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Audit events, newest first."""
    from drayman.store import audit as audit_store

    store = open_store(load_settings())
    with store.read() as conn:
        rows = audit_store.events(
            conn,
            actor=actor,
            action=action,
            since=parse_when(since, "--since") if since else None,
            until=parse_when(until, "--until") if until else None,
            limit=limit,
        )
    documents = [audit_store.as_document(r) for r in rows]
    if as_json:
        print_json(documents)
        return
    print_table(
        ["time", "actor", "source", "action", "object", "detail"],
        [
            [
                iso(r.created_at),
                r.actor,
                r.source,
                r.action,
                f"{r.object_type}:{r.object_id}" if r.object_type else "",
                json.dumps(d["detail"], sort_keys=True) if d["detail"] else "",
            ]
            for r, d in zip(rows, documents, strict=True)
        ],
    )
