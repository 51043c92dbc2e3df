"""Migrations produce exactly the schema the code declares, on every database."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from drayman.store import migrate
from drayman.store.engine import Store
from drayman.store.schema import metadata


@pytest.fixture
def empty_store(store: Store) -> Store:
    metadata.drop_all(store.engine)
    with store.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    return store


def test_upgrade_to_head_matches_declared_schema(empty_store: Store) -> None:
    migrate.upgrade(empty_store)

    with empty_store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)
    assert differences == [], f"migrations and schema.py disagree: {differences}"
    assert migrate.current_revision(empty_store) == migrate.head_revision()


def test_upgrade_is_idempotent(empty_store: Store) -> None:
    migrate.upgrade(empty_store)
    migrate.upgrade(empty_store)

    assert migrate.current_revision(empty_store) == migrate.head_revision()


def test_downgrade_to_base_removes_every_table(empty_store: Store) -> None:
    migrate.upgrade(empty_store)
    from alembic import command

    command.downgrade(migrate._config(empty_store), "base")

    from sqlalchemy import inspect

    assert set(inspect(empty_store.engine).get_table_names()) <= {"alembic_version"}
