"""Queueing: the schedulable task instances that the executor's slots, the capacity's caps,
pools and the DAGs' task limits allow get a new try each, and their workloads are built.

A try whose workload cannot be built fails alone, with the reason in its log
(`fail_undispatchable`, ADR 13); the others are queued and sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from drayman.config import Settings
from drayman.executors.base import Executor
from drayman.scheduler import planner
from drayman.scheduler.caches import RunCache, SpecCache
from drayman.scheduler.capacity import Capacity
from drayman.scheduler.clock import LONG_AGO
from drayman.spec import DagSpec
from drayman.store import dispatch, pools
from drayman.store import task_instances as ti_store
from drayman.store import tries as try_store
from drayman.store.engine import Connection, Store
from drayman.workloads import Workload, log_relpath

log = logging.getLogger("drayman.scheduler")


@dataclass
class Queued:
    """What one round of queueing did: tries queued, workloads to send, runs to re-plan."""

    queued: int = 0
    workloads: list[Workload] = field(default_factory=list)
    dirty: set[int] = field(default_factory=set)


class Queueing:
    """Queues what may run now. `schedulable_left` says whether more may be waiting than the
    last round took: the scheduler looks again when a slot frees, not on every tick."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        executor: Executor,
        capacity: Capacity,
        specs: SpecCache,
        runs: RunCache,
        *,
        hostname: str,
    ) -> None:
        self.settings = settings
        self.store = store
        self.executor = executor
        self.capacity = capacity
        self.specs = specs
        self.runs = runs
        self.hostname = hostname
        self.schedulable_left = True
        self._pools: dict[str, int] | None = None
        self._pools_read_at = LONG_AGO

    def reset(self) -> None:
        """The clock went back: read the pool sizes again."""
        self._pools = None

    def queue(self, conn: Connection, now: datetime, worker_id: int | None) -> Queued:
        """Queue new tries (against `worker_id`, the scheduler's own worker when it runs them)."""
        queued = Queued()
        open_slots = self.executor.open_slots()
        if open_slots <= 0:
            self.schedulable_left = True  # unknown: look once a slot frees
            return queued
        if self.store.supports_skip_locked and not pools.lock_for_queueing(conn):
            self.schedulable_left = True  # another scheduler is queueing: look again next tick
            return queued
        slots = self.capacity.slots(conn, open_slots, now)
        usage = ti_store.slot_usage(conn)
        limit = max(slots * 4, 64)
        rows = ti_store.schedulable(conn, limit=limit, lock=self.store.supports_skip_locked)
        # more may wait than we took (slots, pools, limits): look again when a slot frees
        self.schedulable_left = len(rows) > slots
        admitted = self.capacity.admit(conn, rows, open_slots)
        if admitted.held_back:
            self.schedulable_left = True  # look again when an outcome frees room
        rows, slots = admitted.rows, admitted.slots
        if not rows:
            return queued
        dag_of = {r.dag_run_id: self.runs.key(r.dag_run_id)[0] for r in rows}
        limits = planner.Limits(
            open_slots=slots,
            pool_sizes=self._pool_sizes(conn, now),
            pool_used=usage.per_pool,
            dag_limits={dag_of[r.dag_run_id]: self._max_active_tasks(r.dag_run_id) for r in rows},
            dag_active=usage.per_dag,
        )
        candidates = [
            planner.Candidate(r.id, dag_of[r.dag_run_id], r.pool, r.pool_slots) for r in rows
        ]
        chosen = set(planner.plan_queue(candidates, limits))
        picked = [row for row in rows if row.id in chosen]
        if not picked:
            return queued
        runs = self.runs.rows(conn, [row.dag_run_id for row in picked])
        paths = [
            log_relpath(
                runs[r.dag_run_id].dag_id,
                runs[r.dag_run_id].run_id,
                r.task_id,
                r.map_index,
                r.try_number + 1,
            )
            for r in picked
        ]
        new = try_store.create_tries(conn, picked, log_paths=paths, worker_id=worker_id, now=now)
        queued.queued = len(new)
        built = dispatch.try_workloads(conn, new, self.specs, runs)
        queued.dirty = fail_undispatchable(
            conn, built.failed, self.specs, hostname=self.hostname, now=now
        )
        queued.workloads = list(built.workloads)
        return queued

    def _pool_sizes(self, conn: Connection, now: datetime) -> dict[str, int]:
        """Pool sizes, read again at most every scheduler_poll_s: they change by hand, rarely."""
        poll = timedelta(seconds=self.settings.scheduler_poll_s)
        if self._pools is None or now >= self._pools_read_at + poll:
            self._pools = pools.sizes(conn)
            self._pools_read_at = now
        return self._pools

    def _max_active_tasks(self, run_id: int) -> int:
        dag_id, version = self.runs.key(run_id)
        return self.specs(dag_id, version).max_active_tasks


def fail_undispatchable(
    conn: Connection,
    failed: Sequence[dispatch.Undispatchable],
    spec_of: Callable[[str, str], DagSpec],
    *,
    hostname: str,
    now: datetime,
) -> set[int]:
    """Fail the tries whose workloads could not be built: each alone, never the tick.
    Returns the runs to re-plan."""
    for item in failed:
        log.error("try.undispatchable try_id=%s: %s", item.try_id, item.error)
    recorded = dispatch.fail_undispatchable(conn, failed, spec_of, hostname=hostname, now=now)
    return {item.dag_run_id for item in recorded}
