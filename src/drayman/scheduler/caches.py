"""What the scheduler keeps of the store between ticks, on top of the store's own caches
(`drayman.store.caches`, which the worker's engine uses too): the planner's shape of each
DAG version, and each running run's DAG and version. Nothing here changes once written, so
nothing is stale; a run's entries are dropped when it finishes (`RunCache.forget`).
"""

from __future__ import annotations

from drayman.scheduler.planner import DagShape
from drayman.store import caches
from drayman.store import runs as run_store
from drayman.store.engine import Store


class SpecCache(caches.SpecCache):
    """The store's spec cache, and the planner's shape of each spec, shaped once."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self._shapes: dict[tuple[str, str], DagShape] = {}

    def shape(self, dag_id: str, version: str) -> DagShape:
        key = (dag_id, version)
        shape = self._shapes.get(key)
        if shape is None:
            shape = self._shapes[key] = DagShape.of(self(dag_id, version))
        return shape


class RunCache(caches.RunCache):
    """The store's run-row cache, unbounded (the scheduler forgets runs as they finish), and
    each run's DAG id and bundle version."""

    def __init__(self, store: Store) -> None:
        super().__init__(size=None)
        self.store = store
        self._keys: dict[int, tuple[str, str]] = {}

    def key(self, run_id: int) -> tuple[str, str]:
        """The run's DAG id and bundle version."""
        key = self._keys.get(run_id)
        if key is None:
            with self.store.read() as conn:
                run = run_store.get_run_by_id(conn, run_id)
            key = self._keys[run_id] = (run.dag_id, run.bundle_version)
        return key

    def remember(self, run_id: int, dag_id: str, version: str) -> None:
        self._keys[run_id] = (dag_id, version)

    def forget(self, run_id: int) -> None:
        super().forget(run_id)
        self._keys.pop(run_id, None)
