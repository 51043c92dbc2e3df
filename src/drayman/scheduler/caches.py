"""What the scheduler keeps of the store between ticks: DAG specs by version, and what it
reads of a run while the run runs. Neither changes once written, so nothing here is stale.

`SpecCache(store)(dag_id, version)` and `RunCache.rows(conn, run_ids)` have the interface of
the worker's caches (`drayman.store.caches`, issue 11), so that one may serve both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from drayman.scheduler.planner import DagShape
from drayman.spec import DagSpec
from drayman.store import dags as dag_store
from drayman.store import dispatch
from drayman.store import runs as run_store
from drayman.store.engine import Connection, Store


class SpecCache:
    """DagSpecs, and the planner's shape of each, by DAG id and bundle version: a version's
    spec never changes, so each is read (and shaped) once."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._shapes: dict[tuple[str, str], DagShape] = {}

    def __call__(self, dag_id: str, version: str) -> DagSpec:
        return self.shape(dag_id, version).spec

    def shape(self, dag_id: str, version: str) -> DagShape:
        key = (dag_id, version)
        shape = self._shapes.get(key)
        if shape is None:
            with self.store.read() as conn:
                spec = dag_store.load_spec(conn, dag_id, version)
            shape = self._shapes[key] = DagShape.of(spec)
        return shape


class RunCache:
    """What the scheduler reads of a run while it runs: its DAG and version, and its row for
    building workloads (its ids, dates, conf, params, bundle never change once it exists).
    Both are dropped when the run finishes (`forget`)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._keys: dict[int, tuple[str, str]] = {}
        self._rows: dict[int, Any] = {}

    def rows(self, conn: Connection, run_ids: Sequence[int]) -> dict[int, Any]:
        """The rows of these runs, read in one query for those not cached yet."""
        missing = [run_id for run_id in set(run_ids) if run_id not in self._rows]
        self._rows.update(dispatch.runs_by_id(conn, missing))
        return {run_id: self._rows[run_id] for run_id in run_ids}

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
        self._keys.pop(run_id, None)
        self._rows.pop(run_id, None)
