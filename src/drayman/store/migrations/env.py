"""Alembic environment: the engine comes from drayman's Store, never from an ini file."""

from __future__ import annotations

from alembic import context

from drayman.store.schema import metadata

engine = context.config.attributes["engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=engine.dialect.name == "sqlite",
        compare_type=True,
    )
    context.run_migrations()
