"""A throwaway store (`dags test`, `tasks test`): made from the schema as declared, with no
migrations to run, and with every DAG paused so only the run under test is scheduled."""

from __future__ import annotations

from sqlalchemy import update

from drayman.store.engine import Connection, Store
from drayman.store.schema import dag, metadata


def create_schema(store: Store) -> None:
    """Create every table of an empty database at once: a scratch store is never migrated."""
    metadata.create_all(store.engine)


def pause_every_dag(conn: Connection) -> None:
    """Pause every DAG: the scheduler then starts no run but the one triggered by hand."""
    conn.execute(update(dag).values(is_paused=True))
