"""`drayman db`: create or upgrade the metadata database."""

from __future__ import annotations

import click

from drayman.cli.common import load_settings, open_store


@click.group("db")
def db() -> None:
    """Create or upgrade the metadata database (DRAYMAN_DATABASE_URL)."""


@db.command("migrate")
def migrate_cmd() -> None:
    """Apply every pending migration. Safe to run again: it only does what is missing."""
    from drayman.store import migrate, pools

    settings = load_settings()
    store = open_store(settings, check_schema=False)
    before = migrate.current_revision(store)
    migrate.upgrade(store)
    with store.begin() as conn:
        pools.ensure_default(conn, settings.default_pool_slots)
    after = migrate.current_revision(store)
    if before == after:
        click.echo(f"database is up to date (revision {after})")
    else:
        click.echo(f"database migrated: {before or 'empty'} -> {after}")
    store.dispose()
