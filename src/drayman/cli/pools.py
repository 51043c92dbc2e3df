"""`drayman pools ...`: slot budgets shared by tasks across DAGs."""

from __future__ import annotations

import click

from drayman.cli.common import (
    cli_actor,
    json_option,
    load_settings,
    open_store,
    print_json,
    print_table,
)


@click.group("pools")
def pools() -> None:
    """List and set pools (named slot budgets shared across DAGs)."""


@pools.command("list")
@json_option
def list_pools(as_json: bool) -> None:
    """Every pool with its slots and how many are in use."""
    from drayman.store import pools as pool_store
    from drayman.store import task_instances as ti_store

    store = open_store(load_settings())
    with store.read() as conn:
        rows = pool_store.list_pools(conn)
        used = ti_store.pool_usage(conn)
    if as_json:
        print_json(
            [
                {
                    "name": r.name,
                    "slots": r.slots,
                    "used": used.get(r.name, 0),
                    "description": r.description,
                }
                for r in rows
            ]
        )
        return
    print_table(
        ["pool", "slots", "used", "description"],
        [[r.name, r.slots, used.get(r.name, 0), r.description] for r in rows],
    )


@pools.command("set")
@click.argument("name")
@click.argument("slots", type=click.IntRange(0, None))
@click.option("--description", default="")
def set_pool(name: str, slots: int, description: str) -> None:
    """Create pool NAME or change its number of SLOTS."""
    from drayman.store import audit
    from drayman.store import pools as pool_store

    store = open_store(load_settings())
    with store.begin() as conn:
        pool_store.set_pool(conn, name, slots, description)
        audit.record(
            conn,
            actor=cli_actor(),
            action=audit.AuditAction.POOL_SET,
            now=store.now(),
            object_type="pool",
            object_id=name,
            detail={"slots": slots},
        )
    click.echo(f"pool {name}: {slots} slots")
