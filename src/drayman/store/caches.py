"""Caches of what the store holds and never changes: DAG specs by version, run rows by id.

One implementation, for every process that builds workloads from the store (the worker's
engine, the scheduler). Neither is ever stale for its use, so neither is ever invalidated.
"""

from __future__ import annotations

from collections.abc import Iterable

from drayman.spec import DagSpec
from drayman.store import dags as dag_store
from drayman.store import dispatch
from drayman.store.engine import Connection, Store
from drayman.store.rows import DagRunRow

RUN_CACHE_SIZE = 1024  # run rows kept by id (see RunCache)


class SpecCache:
    """Serialized DAGs by (dag_id, bundle version): a version never changes, so never stale.

    Called like the `spec_of(dag_id, version)` lookups that build workloads take.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._specs: dict[tuple[str, str], DagSpec] = {}

    def __call__(self, dag_id: str, version: str) -> DagSpec:
        key = (dag_id, version)
        spec = self._specs.get(key)
        if spec is None:
            with self.store.read() as conn:
                spec = self._specs[key] = dag_store.load_spec(conn, dag_id, version)
        return spec


class RunCache:
    """Run rows by id, for building workloads: a query per claim fewer.

    What a workload takes from a run (ids, dates, bundle version, params, conf) is written
    once, when the run is created; only its state and start and end dates change, which no
    workload reads. Ids are never reused, so a cached row is never stale for that use.
    `size` bounds what is kept (a worker never learns that a run ended); an owner that does
    learn it (the scheduler) passes None and calls `forget`.
    """

    def __init__(self, size: int | None = RUN_CACHE_SIZE) -> None:
        self.size = size
        self._rows: dict[int, DagRunRow] = {}

    def rows(self, conn: Connection, run_ids: Iterable[int]) -> dict[int, DagRunRow]:
        """The rows of `run_ids`, reading from the store only those not cached."""
        wanted = set(run_ids)
        missing = wanted - self._rows.keys()
        if missing:
            if self.size is not None and len(self._rows) + len(missing) > self.size:
                self._rows.clear()  # simpler than LRU; a refill is one query
            self._rows.update(dispatch.runs_by_id(conn, list(missing)))
        return {run_id: self._rows[run_id] for run_id in wanted if run_id in self._rows}

    def forget(self, run_id: int) -> None:
        """Drop a run's row (it ended: no workload of it is built again)."""
        self._rows.pop(run_id, None)
