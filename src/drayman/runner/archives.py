"""A bundle's archive, fetched from the store by a process that has no open store.

The executor and a warm process fetch one on a bundle cache miss; SQLAlchemy is imported
only then, as it costs memory in every warm process.
"""

from __future__ import annotations

from drayman.config import Settings


def fetch_archive(settings: Settings, version: str) -> bytes:
    """A bundle's archive from the store: the only time a worker touches the database."""
    # Imported here: SQLAlchemy costs memory in every worker and is needed only on a miss.
    from drayman.store.bundles import load_archive
    from drayman.store.engine import Store

    store = Store(settings.effective_database_url, pool_size=1)
    try:
        with store.read() as conn:
            return load_archive(conn, version)
    finally:
        # No pooled connection is left for the tries forked from this process to inherit.
        store.dispose()
