"""Where tries run, answered in one place: in this scheduler's own executor, or on remote
workers. The scheduler is given a `Capacity` and asks it, never the executor's name or type.

- `LocalCapacity`: the scheduler owns its tries. It registers a worker for them, its executor
  reports their events, and the executor's `open_slots()` is exact.
- `FleetCapacity`: remote workers claim the tries and write their outcomes to the store. The
  scheduler sends again what no worker claimed, and caps each queue's tries queued or running
  (counted in the store, on every host) by the live workers serving it (`fleet.queue_cap`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from drayman import fleet
from drayman.config import Settings
from drayman.scheduler.clock import LONG_AGO, db_time
from drayman.states import TIState
from drayman.store import components
from drayman.store import task_instances as ti_store
from drayman.store.engine import Connection, Store

# How old the live workers' concurrency may be when queueing: a worker that just started
# raises its queues' caps within this, not at the next heartbeat.
LIVE_WORKERS_READ_S = 1.0


@dataclass(frozen=True)
class Admitted:
    """The schedulable rows a tick may queue, and how many of them at most (`slots`)."""

    rows: list[Any]
    slots: int
    held_back: bool  # a cap kept some back: look again when an outcome frees room


class Capacity(Protocol):
    """Whether tries run locally or remotely, and so how many more may be queued."""

    @property
    def runs_locally(self) -> bool:
        """True: the scheduler owns its tries (its own worker, its executor's events).
        False: remote workers claim them from the store; unclaimed ones are sent again."""

    def slots(self, conn: Connection, open_slots: int, now: datetime) -> int:
        """How many tries to look for, given the executor's `open_slots()`."""

    def admit(self, conn: Connection, rows: Sequence[Any], open_slots: int) -> Admitted:
        """Which schedulable rows may be queued now."""


class LocalCapacity:
    """Tries run in the scheduler's own executor, whose `open_slots()` is exact."""

    runs_locally = True

    def slots(self, conn: Connection, open_slots: int, now: datetime) -> int:
        return open_slots

    def admit(self, conn: Connection, rows: Sequence[Any], open_slots: int) -> Admitted:
        return Admitted(list(rows), open_slots, held_back=False)


class FleetCapacity:
    """Tries run on remote workers: the executor's `open_slots()` is `parallelism`, each
    queue's floor, and each served queue's cap comes from the live workers serving it."""

    runs_locally = False

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.heartbeat_timeout = timedelta(seconds=settings.heartbeat_timeout_s)
        self._live_concurrency: dict[str, int] = {}  # queue -> live workers' --concurrency
        self._read_at = LONG_AGO

    def slots(self, conn: Connection, open_slots: int, now: datetime) -> int:
        """The live workers are read again once their last read is `LIVE_WORKERS_READ_S` old
        (or the clock went back)."""
        if not self._read_at <= now < self._read_at + timedelta(seconds=LIVE_WORKERS_READ_S):
            cutoff = db_time(self.store, conn, now) - self.heartbeat_timeout
            self._live_concurrency = components.live_concurrency(conn, "worker", cutoff)
            self._read_at = now
        caps = self._caps(open_slots)
        return max(open_slots, sum(caps.values())) if caps else open_slots

    def admit(self, conn: Connection, rows: Sequence[Any], open_slots: int) -> Admitted:
        """The rows that keep each queue's tries queued or running within its cap. Per queue,
        so tries waiting for a queue no worker serves never hold up the queues that have
        workers; a queue nobody serves keeps `open_slots` (parallelism)."""
        caps = self._caps(open_slots)
        counts = ti_store.per_queue(conn)
        room = {
            q: caps.get(q, open_slots) - c.get(TIState.QUEUED, 0) - c.get(TIState.RUNNING, 0)
            for q, c in counts.items()
        }
        kept = []
        held_back = False
        for row in rows:
            left = room.get(row.queue, caps.get(row.queue, open_slots))
            if left > 0:
                kept.append(row)
            else:
                held_back = True
            room[row.queue] = left - 1
        return Admitted(kept, len(kept), held_back)

    def _caps(self, floor: int) -> dict[str, int]:
        return {
            queue: fleet.queue_cap(concurrency, floor)
            for queue, concurrency in self._live_concurrency.items()
        }


def capacity_for(executor_name: str, store: Store, settings: Settings) -> Capacity:
    """The capacity of an executor by its setting's name: "local" runs tries in the scheduler's
    process tree; every other executor (Celery) on remote workers."""
    if executor_name == "local":
        return LocalCapacity()
    return FleetCapacity(store, settings)
