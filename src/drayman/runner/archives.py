"""Bundle archives for warm processes: put in the cache ahead, or fetched on a miss.

The owner of a pool puts each bundle version in the cache before a warm process needs it
(`BundlePrefetch`): warm processes hold no database password to fetch one. A warm process
that can reach the database fetches one itself on a miss (`fetch_archive`); SQLAlchemy is
imported only then, as it costs memory in every warm process.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from drayman.bundles.cache import BundleCache
from drayman.config import Settings
from drayman.workloads import Workload


class BundlePrefetch:
    """Puts the bundle versions of workloads in the cache; `load(version)` gives an archive.

    Usually a hit (the DAG processor of this host, or an earlier try, extracted it already).
    A failure is logged to `log` and left to the warm process, which fails the try with the
    reason in its log; that version is asked for again with the next workload that needs it.
    """

    def __init__(self, cache: Path, load: Callable[[str], bytes], log: logging.Logger) -> None:
        self._cache = BundleCache(cache)
        self._load = load
        self._log = log
        self.cached: set[str] = set()  # versions known to be in the cache

    def ensure(self, workloads: Iterable[Workload]) -> None:
        for version in {w.run.bundle_version for w in workloads} - self.cached:
            try:
                self._cache.path(version, functools.partial(self._load, version))
            except Exception as exc:
                self._log.warning("bundle.fetch_failed version=%s: %s", version[:12], exc)
            else:
                self.cached.add(version)


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
