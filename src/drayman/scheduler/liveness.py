"""Liveness, every heartbeat_interval_s of the clock the tick is given: heartbeat this
scheduler's components, fail the tries of workers that stopped heartbeating, mark dead
components stopped, stop the tries the store ended, and (remote workers) send again the tries
no worker claimed.

Staleness is judged by the database's clock (`clock.db_time`), never by one host's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from drayman.config import Settings
from drayman.executors.base import Executor
from drayman.scheduler import recording
from drayman.scheduler.capacity import Capacity
from drayman.scheduler.clock import LONG_AGO, db_time
from drayman.scheduler.queueing import fail_undispatchable
from drayman.spec import DagSpec
from drayman.store import components, dispatch, try_claims, try_liveness
from drayman.store import tries as try_store
from drayman.store.engine import Connection, Store
from drayman.workloads import TryOutcome, Workload

log = logging.getLogger("drayman.scheduler")


@dataclass
class Checked:
    """What one liveness check found: tries lost, runs to re-plan, tries to send again."""

    lost: int = 0
    dirty: set[int] = field(default_factory=set)
    resend: list[Workload] = field(default_factory=list)


class Liveness:
    """The scheduler's housekeeping; `check` does it when it is due."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        executor: Executor,
        capacity: Capacity,
        *,
        spec_of: Callable[[str, str], DagSpec],
        retry_delay: Callable[[try_store.RetrySubject], float],
        hostname: str,
    ) -> None:
        self.settings = settings
        self.store = store
        self.executor = executor
        self.capacity = capacity
        self.spec_of = spec_of
        self.retry_delay = retry_delay
        self.hostname = hostname
        self.due_at = LONG_AGO
        self._resent: dict[int, datetime] = {}  # try id -> when it was last sent again

    def reset(self) -> None:
        """The clock went back: due now, and every try may be sent again."""
        self.due_at = LONG_AGO
        self._resent.clear()

    def check(
        self, conn: Connection, now: datetime, component_ids: Iterable[int | None]
    ) -> Checked | None:
        """Heartbeat, find the lost, stop the ended; None when not due at `now`."""
        if now < self.due_at:
            return None
        self.due_at = now + timedelta(seconds=self.settings.heartbeat_interval_s)
        checked = Checked()
        db_now = db_time(self.store, conn, now)
        for component_id in component_ids:
            if component_id is not None:
                components.heartbeat(conn, component_id, db_now)
        cutoff = db_now - timedelta(seconds=self.settings.heartbeat_timeout_s)
        self._fail_lost_tries(conn, cutoff, now, checked)
        for kind in ("scheduler", "worker"):
            components.mark_dead(conn, kind, cutoff, now)
        self.stop_ended_tries(conn)
        if not self.capacity.runs_locally:  # tries travel through a broker: what did it lose?
            checked.resend = self._unclaimed_workloads(conn, db_now, now, checked)
        self.executor.heartbeat()
        return checked

    def stop_ended_tries(self, conn: Connection) -> None:
        """Kill the tries this scheduler's own executor runs that the store ended: cancelled,
        cleared or marked by a person, or declared lost (ADR 12). Their outcomes are refused."""
        for try_id in try_liveness.ended_among(conn, self.executor.running_try_ids()):
            log.warning("try.stopping try_id=%s: the store ended it; killing its process", try_id)
            self.executor.cancel(try_id)

    def _fail_lost_tries(
        self, conn: Connection, cutoff: datetime, now: datetime, checked: Checked
    ) -> None:
        """Fail the unfinished tries of dead workers, in one fenced batch: a try a person
        ended meanwhile, or whose worker's outcome came first, is not counted as lost."""
        lost = [
            TryOutcome(
                try_id=row.id,
                succeeded=False,
                started_at=row.start_date or row.queued_at,
                ended_at=now,
                error=f"the worker on {row.hostname} stopped heartbeating: try lost",
            )
            for row in try_liveness.unfinished_of_dead_workers(conn, cutoff)
        ]
        delays = recording.retry_delays(conn, lost, self.retry_delay)
        for recorded in try_store.record_outcomes(conn, lost, retry_delays=delays):
            checked.lost += 1
            checked.dirty.add(recorded.dag_run_id)
            log.warning("task.lost ti=%s try_id=%s", recorded.ti_id, recorded.try_id)

    def _unclaimed_workloads(
        self, conn: Connection, db_now: datetime, now: datetime, checked: Checked
    ) -> list[Workload]:
        """The database is the truth, the broker only transport: a try no worker claimed within
        queued_timeout_s is sent again, at most once per timeout. If the first message was only
        slow, the fence lets one of the two copies run and refuses the other."""
        timeout = self.settings.queued_timeout_s
        cutoff = db_now - timedelta(seconds=timeout)
        resent_before = now - timedelta(seconds=timeout)
        due = [
            try_id
            for try_id in try_liveness.unclaimed_since(conn, cutoff)
            if self._resent.get(try_id, LONG_AGO) <= resent_before
        ]
        built = dispatch.try_workloads(conn, try_claims.queued_current(conn, due), self.spec_of)
        checked.dirty |= fail_undispatchable(
            conn, built.failed, self.spec_of, hostname=self.hostname, now=now
        )
        workloads: list[Workload] = list(built.workloads)
        for workload in built.workloads:
            self._resent[workload.try_id] = now
        if workloads:
            log.warning("try.resent count=%d: unclaimed for %.0f s", len(workloads), timeout)
        # forget tries resent long ago: they were claimed, finished or will be resent again
        forget_before = now - timedelta(seconds=10 * timeout)
        self._resent = {k: v for k, v in self._resent.items() if v > forget_before}
        return workloads
