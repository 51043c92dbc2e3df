"""Alembic, driven from code: `drayman db migrate` and every test that needs a real schema.

The migration scripts live in `drayman/store/migrations` inside the package, so an installed
drayman can migrate its database without a checkout or an alembic.ini.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

if TYPE_CHECKING:
    from drayman.store.engine import Store

MIGRATIONS = Path(__file__).parent / "migrations"


def _config(store: Store) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = store.engine
    return config


def upgrade(store: Store, revision: str = "head") -> None:
    """Apply every migration up to `revision`."""
    command.upgrade(_config(store), revision)


def current_revision(store: Store) -> str | None:
    with store.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory(str(MIGRATIONS)).get_current_head()
