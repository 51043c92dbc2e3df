"""The scheduler loop: `tick(now)` is one iteration; `run()` only adds waiting and stopping.

A tick records what the executor reported, creates due runs, starts queued runs, advances
the runs that changed (the planner decides), and queues ready task instances, all in one
transaction, then hands the new workloads to the executor. Between ticks it sleeps until an
event arrives (a try finished, somebody triggered a run) or the next thing falls due, with a
fallback poll so that nothing depends on an event being delivered.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from drayman import fleet
from drayman.config import Settings
from drayman.exceptions import DraymanError
from drayman.executors.base import Executor
from drayman.scheduler import dispatch, planner
from drayman.scheduler import runs as run_creation
from drayman.scheduler.wakeup import Doorbell
from drayman.spec import DagSpec, resolve_refs
from drayman.states import RunState, StateChange, TIState
from drayman.store import components, pools, try_claims, try_liveness
from drayman.store import dags as dag_store
from drayman.store import runs as run_store
from drayman.store import task_instances as ti_store
from drayman.store import tries as try_store
from drayman.store.dags import NextRun
from drayman.store.engine import Store
from drayman.store.rows import DagRow, DagRunRow, TaskInstanceRow
from drayman.workloads import (
    RunsChanged,
    TryOutcome,
    TryStarted,
    Workload,
    dispatch_error,
    log_relpath,
)

log = logging.getLogger("drayman.scheduler")

# How old the live workers' concurrency may be when queueing: a worker that just started
# raises its queues' caps within this, not at the next heartbeat.
LIVE_WORKERS_READ_S = 1.0


@dataclass
class TickReport:
    """What one tick did; tests and logs read it."""

    recorded: int = 0
    runs_created: int = 0
    runs_started: int = 0
    runs_finished: int = 0
    queued: int = 0
    lost: int = 0
    finished_runs: list[tuple[int, RunState]] = field(default_factory=list)

    @property
    def progressed(self) -> bool:
        return bool(self.recorded or self.runs_created or self.runs_started or self.queued)


class Scheduler:
    """Drives DAG runs forward. One per process; several may share PostgreSQL or MySQL."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        executor: Executor,
        *,
        executor_name: str = "local",
        clock: Callable[[], datetime] | None = None,
        immediate_retries: bool = False,
    ) -> None:
        self.settings = settings
        self.store = store
        self.executor = executor
        self.executor_name = executor_name
        self.clock = clock or store.now
        self.immediate_retries = immediate_retries  # `dags test`: no waiting between tries
        self.hostname = socket.gethostname()
        self.scheduler_id: int | None = None
        self.worker_id: int | None = None
        self._shapes: dict[tuple[str, str], planner.DagShape] = {}
        self._run_keys: dict[int, tuple[str, str]] = {}
        self._dirty: set[int] = set()
        self._full_scan_at = 0.0
        # when to look for due scheduled runs and queued runs to start: not on every tick, only
        # when something may have changed (see mark_all_dirty, _finish, _sleep_for) or polling
        self._runs_check_at = 0.0
        self._retries_check_at = 0.0  # when to look for retries whose wait is over
        self._housekeeping_at = 0.0
        self._check_ended = False  # a doorbell rang: ask which of our tries the store ended
        self._live_concurrency: dict[str, int] = {}  # queue -> live workers' --concurrency
        self._live_read_at = -LIVE_WORKERS_READ_S  # time.monotonic() of its last read
        self.run_listeners: list[Callable[[DagRunRow], None]] = []  # called as runs finish
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._unrecorded: list[TryStarted | TryOutcome] = []
        self._pools: dict[str, int] | None = None
        self._schedulable_left = True
        self._to_resend: list[Workload] = []  # unclaimed tries to send again (remote executors)
        self._resent: dict[int, float] = {}  # try id -> when it was last sent again (monotonic)
        self._wake_times: tuple[float, list[datetime | None]] | None = None
        self._pools_read_at = 0.0
        self._run_rows: dict[int, DagRunRow] = {}  # dropped when the run finishes
        # how often every running run is re-planned; shorter for an executor without events
        self._scan_interval_s = settings.scheduler_poll_s

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Register this scheduler (and its local worker) and start the executor."""
        now = self.clock()
        with self.store.begin() as conn:
            pools.ensure_default(conn, self.settings.default_pool_slots)
            self.scheduler_id = components.register(
                conn,
                kind="scheduler",
                hostname=self.hostname,
                pid=os.getpid(),
                executor=self.executor_name,
                now=now,
            )
            if self.executor_name == "local":
                self.worker_id = components.register(
                    conn,
                    kind="worker",
                    hostname=self.hostname,
                    pid=os.getpid(),
                    executor="local",
                    queues=["*"],
                    concurrency=self.settings.parallelism,
                    now=now,
                )
        self.executor.start()
        if self.executor.fileno() is None:
            # Its workers write outcomes to the store and tell us nothing: re-plan every
            # running run each remote_poll_s. (Celery's wake-up gives it an fd: ADR 9.)
            self._scan_interval_s = min(self.settings.remote_poll_s, self.settings.scheduler_poll_s)
        log.info("scheduler.started id=%s executor=%s", self.scheduler_id, self.executor_name)

    def stop(self, grace_s: float = 30.0) -> None:
        """Stop the executor (finishing running tries up to `grace_s`) and record the rest."""
        self.executor.stop(grace_s)
        now = self.clock()
        with self.store.begin() as conn:
            events = [e for e in self.executor.events() if not isinstance(e, RunsChanged)]
            self._record_events(conn, events, TickReport())
            for component_id in (self.scheduler_id, self.worker_id):
                if component_id is not None:
                    components.mark_stopped(conn, component_id, now)
        os.close(self._wake_r)
        os.close(self._wake_w)
        log.info("scheduler.stopped id=%s", self.scheduler_id)

    # -- one iteration -----------------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> TickReport:
        """One iteration at `now`: record, create, start, advance, queue, submit.

        Two transactions: the executor's events first, then everything the scheduler decides.
        Workloads go to the executor only after their tries are committed.
        """
        now = now or self.clock()
        report = TickReport()
        self._take_events()
        if self._unrecorded:
            # committed on their own, and kept until they are: whatever fails later in the
            # tick, or if the database is down for a while, no outcome is lost
            with self.store.begin() as conn:
                self._record_events(conn, self._unrecorded, report)
            self._unrecorded.clear()
        if not self._may_have_work(report):
            return report
        with self.store.begin() as conn:
            if self._check_ended:
                self._stop_ended_tries(conn)
            self._housekeeping(conn, now, report)
            self._find_due_retries(conn, now)
            if time.monotonic() >= self._runs_check_at:
                self._runs_check_at = time.monotonic() + self.settings.scheduler_poll_s
                self._create_due_runs(conn, now, report)
                self._start_queued_runs(conn, now, report)
                if report.runs_created:
                    self._runs_check_at = 0.0  # a DAG catching up may have more due
            callbacks = self._advance_runs(conn, now, report)
            workloads = self._queue(conn, now, report)
        resend, self._to_resend = self._to_resend, []
        if workloads or callbacks or resend:
            self.executor.submit([*workloads, *callbacks, *resend])
        if report.recorded or report.runs_created or report.runs_finished or report.lost:
            self._wake_times = None  # retries and next runs may have moved
        return report

    def _take_events(self) -> None:
        """Keep the executor's events for recording; a `RunsChanged` (remote workers recorded
        outcomes themselves and rang, ADR 9) only marks runs to re-plan."""
        for event in self.executor.events():
            if not isinstance(event, RunsChanged):
                self._unrecorded.append(event)
                continue
            self._dirty.update(event.run_ids)
            if event.all_runs:  # e.g. a trigger, clear or cancel made on another host
                self.mark_all_dirty()
            self._wake_times = None  # a failed try's retry may now be the next thing due

    def _may_have_work(self, report: TickReport) -> bool:
        """Whether the decision transaction can change anything; a tick right after a burst
        of queueing, with no event since, skips it instead of asking the database for
        nothing. The fallback poll and housekeeping deadlines still bound every wait."""
        mono = time.monotonic()
        return bool(
            report.recorded
            or self._dirty
            or mono >= self._runs_check_at
            or mono >= self._retries_check_at
            or mono >= self._full_scan_at
            or mono >= self._housekeeping_at
            or (self._schedulable_left and self.executor.open_slots() > 0)
        )

    def mark_all_dirty(self) -> None:
        """Something outside changed the store (a trigger, a pause, a new bundle): on the next
        tick, look for due and queued runs and re-plan every active run."""
        self._full_scan_at = 0.0
        self._runs_check_at = 0.0
        self._wake_times = None
        self._check_ended = True  # it may have been a cancel

    # -- recording ---------------------------------------------------------------------------

    def _record_events(
        self, conn: Connection, events: Sequence[TryStarted | TryOutcome], report: TickReport
    ) -> None:
        outcomes = [e for e in events if isinstance(e, TryOutcome)]
        ended = {o.try_id for o in outcomes}
        # a start whose outcome arrived in the same batch is already in the outcome
        starts = [e for e in events if isinstance(e, TryStarted) and e.try_id not in ended]
        try_store.record_started_many(conn, starts)
        delays = self._retry_delays(conn, outcomes)
        recorded = try_store.record_outcomes(conn, outcomes, retry_delays=delays)
        if len(recorded) < len(outcomes):
            taken = {r.try_id for r in recorded}
            for outcome in outcomes:
                if outcome.try_id not in taken:
                    log.warning(
                        "try.fenced try_id=%s: outcome refused, try is no longer current",
                        outcome.try_id,
                    )
        for item in recorded:
            report.recorded += 1
            self._dirty.add(item.dag_run_id)
            if item.state == TIState.UP_FOR_RETRY:
                log.info(
                    "task.retry_scheduled ti=%s try=%s/%s",
                    item.ti_id,
                    item.try_number,
                    item.max_tries,
                )

    def _retry_delays(self, conn: Connection, outcomes: Sequence[TryOutcome]) -> dict[int, float]:
        """The wait before the next try of each failed try, for the store to apply."""
        return {s.try_id: self._retry_delay(s) for s in try_store.retry_subjects(conn, outcomes)}

    def _retry_delay(self, subject: try_store.RetrySubject) -> float:
        if self.immediate_retries:
            return 0.0
        spec = self._shape(subject.dag_id, subject.bundle_version).spec
        return dispatch.task_retry_delay_s(spec, subject)

    # -- liveness ----------------------------------------------------------------------------

    def _housekeeping(self, conn: Connection, now: datetime, report: TickReport) -> None:
        mono = time.monotonic()
        if mono < self._housekeeping_at:
            return
        self._housekeeping_at = mono + self.settings.heartbeat_interval_s
        db_now = self.store.db_now(conn)
        for component_id in (self.scheduler_id, self.worker_id):
            if component_id is not None:
                components.heartbeat(conn, component_id, db_now)
        cutoff = db_now - timedelta(seconds=self.settings.heartbeat_timeout_s)
        self._fail_lost_tries(conn, cutoff, now, report)
        for kind in ("scheduler", "worker"):
            components.mark_dead(conn, kind, cutoff, now)
        self._retries_check_at = 0.0  # and look for due retries, as a fallback
        self._stop_ended_tries(conn)
        if self.worker_id is None:  # tries travel through a broker: find what it lost
            self._to_resend = self._unclaimed_workloads(conn, db_now)
        self.executor.heartbeat()

    def _fail_lost_tries(
        self, conn: Connection, cutoff: datetime, now: datetime, report: TickReport
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
        delays = self._retry_delays(conn, lost)
        for recorded in try_store.record_outcomes(conn, lost, retry_delays=delays):
            report.lost += 1
            self._dirty.add(recorded.dag_run_id)
            log.warning("task.lost ti=%s try_id=%s", recorded.ti_id, recorded.try_id)

    def _stop_ended_tries(self, conn: Connection) -> None:
        """Kill the tries this scheduler's own executor runs that the store ended: cancelled,
        cleared or marked by a person, or declared lost (ADR 12). Their outcomes are refused."""
        self._check_ended = False
        for try_id in try_liveness.ended_among(conn, self.executor.running_try_ids()):
            log.warning("try.stopping try_id=%s: the store ended it; killing its process", try_id)
            self.executor.cancel(try_id)

    def _unclaimed_workloads(self, conn: Connection, db_now: datetime) -> list[Workload]:
        """The database is the truth, the broker only transport: a try no worker claimed within
        queued_timeout_s is sent again, at most once per timeout. If the first message was only
        slow, the fence lets one of the two copies run and refuses the other."""
        timeout = self.settings.queued_timeout_s
        cutoff = db_now - timedelta(seconds=timeout)
        mono = time.monotonic()
        due = [
            try_id
            for try_id in try_liveness.unclaimed_since(conn, cutoff)
            if self._resent.get(try_id, 0.0) <= mono - timeout
        ]
        built = dispatch.try_workloads(conn, try_claims.queued_current(conn, due), self._spec)
        self._fail_undispatchable(conn, built.failed, self.clock())
        workloads: list[Workload] = list(built.workloads)
        for workload in built.workloads:
            self._resent[workload.try_id] = mono
        if workloads:
            log.warning("try.resent count=%d: unclaimed for %.0f s", len(workloads), timeout)
        # forget tries resent long ago: they were claimed, finished or will be resent again
        self._resent = {k: v for k, v in self._resent.items() if v > mono - 10 * timeout}
        return workloads

    def _find_due_retries(self, conn: Connection, now: datetime) -> None:
        """Runs holding a retry whose wait is over get planned (and the retry queued)."""
        if time.monotonic() < self._retries_check_at:
            return
        self._retries_check_at = time.monotonic() + self.settings.scheduler_poll_s
        for row in ti_store.retries_due(conn, now):
            self._dirty.add(row.dag_run_id)

    # -- runs --------------------------------------------------------------------------------

    def _create_due_runs(self, conn: Connection, now: datetime, report: TickReport) -> None:
        for row in dag_store.dags_needing_next(conn):
            self._compute_next(conn, row, now)
        for due in dag_store.due_dags(conn, now):
            spec = self._shape(due.dag_id, due.bundle_version).spec
            if run_creation.create_scheduled_run(conn, due, spec, now):
                report.runs_created += 1
                log.info(
                    "run.created dag=%s logical_date=%s",
                    due.dag_id,
                    due.next_logical_date.isoformat(),
                )
            last = run_store.latest_scheduled_run(conn, due.dag_id)
            self._store_next(conn, due.dag_id, run_creation.next_run_of(spec, last, now), now)

    def _compute_next(self, conn: Connection, row: DagRow, now: datetime) -> None:
        try:
            spec = self._shape(row.dag_id, row.bundle_version).spec
            last = run_store.latest_scheduled_run(conn, row.dag_id)
            nxt = run_creation.next_run_of(spec, last, now)
        except DraymanError as exc:
            log.error("dag.schedule_error dag=%s: %s", row.dag_id, exc)
            nxt = None
        self._store_next(conn, row.dag_id, nxt, now)

    @staticmethod
    def _store_next(conn: Connection, dag_id: str, info: Any, now: datetime) -> None:
        nxt = None
        if info is not None:
            nxt = NextRun(
                info.logical_date, info.data_interval_start, info.data_interval_end, info.run_after
            )
        dag_store.set_next_run(conn, dag_id, nxt, now)

    def _start_queued_runs(self, conn: Connection, now: datetime, report: TickReport) -> None:
        waiting = run_store.runs_to_start(conn)
        if not waiting:
            return
        running = run_store.running_counts(conn)
        for run in waiting:
            spec = self._shape(run.dag_id, run.bundle_version).spec
            if running.get(run.dag_id, 0) >= spec.max_active_runs:
                continue
            run_store.start_run(conn, run, spec, now)
            running[run.dag_id] = running.get(run.dag_id, 0) + 1
            self._run_keys[run.id] = (run.dag_id, run.bundle_version)
            self._dirty.add(run.id)
            report.runs_started += 1
            log.info(
                "run.started dag=%s run=%s bundle=%s",
                run.dag_id,
                run.run_id,
                run.bundle_version[:12],
            )

    def _advance_runs(self, conn: Connection, now: datetime, report: TickReport) -> list[Workload]:
        mono = time.monotonic()
        if mono >= self._full_scan_at:
            runs = run_store.running_runs(conn)
            self._full_scan_at = mono + self._scan_interval_s
        else:
            runs = run_store.running_runs(conn, self._dirty)
        self._dirty.clear()
        callbacks: list[Workload] = []
        # expansions add task instances that may make further progress: plan until stable
        for _ in range(3):
            plan = self._plan(conn, runs, now)
            ti_store.apply_changes(conn, plan.changes, now)
            for run_id, placeholder in plan.expansions:
                self._expand(conn, run_id, placeholder, now)
            for run_id, state in plan.finished:
                callbacks.extend(self._finish(conn, run_id, state, now, report))
            if not plan.expansions:
                break
            runs = run_store.running_runs(conn, [run_id for run_id, _ in plan.expansions])
        return callbacks

    def _plan(self, conn: Connection, runs: Sequence[DagRunRow], now: datetime) -> planner.RunPlan:
        tis_by_run: dict[int, list[planner.TIView]] = {run.id: [] for run in runs}
        for ti in ti_store.of_runs(conn, list(tis_by_run)):
            tis_by_run[ti.dag_run_id].append(
                planner.TIView(ti.id, ti.task_id, ti.map_index, TIState(ti.state), ti.next_retry_at)
            )
        views = []
        for run in runs:
            self._run_keys[run.id] = (run.dag_id, run.bundle_version)
            shape = self._shape(run.dag_id, run.bundle_version)
            views.append(planner.RunView(run.id, run.dag_id, shape, tis_by_run[run.id]))
        return planner.plan_runs(views, now)

    def _expand(
        self, conn: Connection, run_id: int, placeholder: planner.TIView, now: datetime
    ) -> None:
        dag_id, version = self._run_key(run_id)
        shape = self._shape(dag_id, version)
        task = shape.spec.tasks[placeholder.task_id]
        sources = shape.expand_sources.get(task.task_id, frozenset())
        values = resolve_refs(task.expand, ti_store.results_of(conn, run_id, sources))
        lengths = {name: len(v) for name, v in values.items() if isinstance(v, list)}
        if len(lengths) != len(values) or len(set(lengths.values())) > 1:
            log.error(
                "task.expand_failed dag=%s task=%s: expand() needs lists of equal length, got %s",
                dag_id,
                task.task_id,
                {k: type(v).__name__ for k, v in values.items()},
            )
            ti_store.apply_changes(
                conn, [StateChange(placeholder.id, TIState.PENDING, TIState.UPSTREAM_FAILED)], now
            )
        else:
            ti_store.expand(conn, placeholder.id, next(iter(lengths.values()), 0), now)
        self._dirty.add(run_id)

    def _finish(
        self, conn: Connection, run_id: int, state: RunState, now: datetime, report: TickReport
    ) -> list[Workload]:
        self._run_rows.pop(run_id, None)
        self._run_keys.pop(run_id, None)
        if not run_store.finish_run(conn, run_id, state, now):
            return []
        report.runs_finished += 1
        report.finished_runs.append((run_id, state))
        self._runs_check_at = 0.0  # a queued run of this DAG may start now
        run = run_store.get_run_by_id(conn, run_id)
        log.info("run.finished dag=%s run=%s state=%s", run.dag_id, run.run_id, state)
        for listener in self.run_listeners:
            listener(run)
        spec = self._shape(run.dag_id, run.bundle_version).spec
        callback = "on_success" if state == RunState.SUCCESS else "on_failure"
        if callback not in spec.callbacks:
            return []
        path = dispatch.callback_log_path(run, callback)
        try:
            return [dispatch.callback_workload(run, spec, callback, str(state), path)]
        except Exception as exc:  # e.g. a stored conf too deep to read: the run stays finished
            log.error(
                "callback.undispatchable dag=%s run=%s callback=%s: %s",
                run.dag_id,
                run.run_id,
                callback,
                dispatch_error(exc),
            )
            return []

    # -- queueing ----------------------------------------------------------------------------

    def _queue(self, conn: Connection, now: datetime, report: TickReport) -> list[Workload]:
        slots = self.executor.open_slots()
        if slots <= 0:
            self._schedulable_left = True  # unknown: look once a slot frees
            return []
        if self.store.supports_skip_locked and not pools.lock_for_queueing(conn):
            self._schedulable_left = True  # another scheduler is queueing: look again next tick
            return []
        floor = slots
        caps = None
        if self.executor.in_flight_from_store:
            caps = self._queue_caps(conn, floor)
        if caps:
            slots = max(slots, sum(caps.values()))
        usage = ti_store.slot_usage(conn)
        limit = max(slots * 4, 64)
        rows = ti_store.schedulable(conn, limit=limit, lock=self.store.supports_skip_locked)
        # more may wait than we took (slots, pools, limits): look again when a slot frees
        self._schedulable_left = len(rows) > slots
        if caps is not None:
            rows = self._within_queue_caps(conn, rows, caps, floor)
            slots = len(rows)
        if not rows:
            return []
        limits = planner.Limits(
            open_slots=slots,
            pool_sizes=self._pool_sizes(conn),
            pool_used=usage.per_pool,
            dag_limits={self._run_key(r.dag_run_id)[0]: self._max_active_tasks(r) for r in rows},
            dag_active=usage.per_dag,
        )
        candidates = [
            planner.Candidate(r.id, self._run_key(r.dag_run_id)[0], r.pool, r.pool_slots)
            for r in rows
        ]
        chosen = set(planner.plan_queue(candidates, limits))
        picked = [row for row in rows if row.id in chosen]
        if not picked:
            return []
        runs = self._runs_by_id(conn, [row.dag_run_id for row in picked])
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
        new = try_store.create_tries(
            conn, picked, log_paths=paths, worker_id=self.worker_id, now=now
        )
        report.queued += len(new)
        built = dispatch.try_workloads(conn, new, self._spec, runs)
        self._fail_undispatchable(conn, built.failed, now)
        return list(built.workloads)

    def _fail_undispatchable(
        self, conn: Connection, failed: Sequence[dispatch.Undispatchable], now: datetime
    ) -> None:
        """Fail the tries whose workloads could not be built: each alone, never the tick."""
        for item in failed:
            log.error("try.undispatchable try_id=%s: %s", item.try_id, item.error)
        for recorded in dispatch.fail_undispatchable(
            conn, failed, self._spec, hostname=self.hostname, now=now
        ):
            self._dirty.add(recorded.dag_run_id)

    def _queue_caps(self, conn: Connection, floor: int) -> dict[str, int]:
        """Remote workers: each served queue's cap on tries queued or running
        (`fleet.queue_cap`); a queue nobody serves keeps `floor` (parallelism). The live
        workers are read again once their last read is `LIVE_WORKERS_READ_S` old."""
        if time.monotonic() - self._live_read_at >= LIVE_WORKERS_READ_S:
            cutoff = self.store.db_now(conn) - timedelta(seconds=self.settings.heartbeat_timeout_s)
            self._live_concurrency = components.live_concurrency(conn, "worker", cutoff)
            self._live_read_at = time.monotonic()
        return {
            queue: fleet.queue_cap(concurrency, floor)
            for queue, concurrency in self._live_concurrency.items()
        }

    def _within_queue_caps(
        self, conn: Connection, rows: list[Any], caps: dict[str, int], floor: int
    ) -> list[Any]:
        """Remote workers: the rows that keep each queue's tries queued or running (counted in
        the store, on every host) within its cap. Per queue, so tries waiting for a queue no
        worker serves never hold up the queues that have workers."""
        counts = ti_store.per_queue(conn)
        room = {
            q: caps.get(q, floor) - c.get(TIState.QUEUED, 0) - c.get(TIState.RUNNING, 0)
            for q, c in counts.items()
        }
        kept = []
        for row in rows:
            left = room.get(row.queue, caps.get(row.queue, floor))
            if left > 0:
                kept.append(row)
            else:
                self._schedulable_left = True  # look again when an outcome frees one
            room[row.queue] = left - 1
        return kept

    def _due_times(self) -> list[datetime | None]:
        """The next scheduled run and the next retry, read again only when they may have
        changed (a tick recorded or created something) or every scheduler_poll_s."""
        mono = time.monotonic()
        if self._wake_times is None or mono >= self._wake_times[0]:
            with self.store.read() as conn:
                times = [dag_store.earliest_next_run(conn), ti_store.next_retry_time(conn)]
            self._wake_times = (mono + self.settings.scheduler_poll_s, times)
        return self._wake_times[1]

    def _pool_sizes(self, conn: Connection) -> dict[str, int]:
        """Pool sizes, read again at most every scheduler_poll_s: they change by hand, rarely."""
        mono = time.monotonic()
        if self._pools is None or mono >= self._pools_read_at + self.settings.scheduler_poll_s:
            self._pools = pools.sizes(conn)
            self._pools_read_at = mono
        return self._pools

    def _runs_by_id(self, conn: Connection, run_ids: Sequence[int]) -> dict[int, DagRunRow]:
        """Run rows for building workloads. What a workload takes from a run (its ids, dates,
        conf, params, bundle) never changes once it exists, so rows are cached while it runs."""
        missing = [run_id for run_id in set(run_ids) if run_id not in self._run_rows]
        self._run_rows.update(dispatch.runs_by_id(conn, missing))
        return {run_id: self._run_rows[run_id] for run_id in run_ids}

    def _max_active_tasks(self, row: TaskInstanceRow) -> int:
        dag_id, version = self._run_key(row.dag_run_id)
        return self._shape(dag_id, version).spec.max_active_tasks

    # -- caches ------------------------------------------------------------------------------

    def _shape(self, dag_id: str, version: str) -> planner.DagShape:
        key = (dag_id, version)
        shape = self._shapes.get(key)
        if shape is None:
            with self.store.read() as conn:
                spec = dag_store.load_spec(conn, dag_id, version)
            shape = self._shapes[key] = planner.DagShape.of(spec)
        return shape

    def _spec(self, dag_id: str, version: str) -> DagSpec:
        return self._shape(dag_id, version).spec

    def _run_key(self, run_id: int) -> tuple[str, str]:
        key = self._run_keys.get(run_id)
        if key is None:
            with self.store.read() as conn:
                run = run_store.get_run_by_id(conn, run_id)
            key = self._run_keys[run_id] = (run.dag_id, run.bundle_version)
        return key

    # -- the loop ----------------------------------------------------------------------------

    def wake(self) -> None:
        """Interrupt `run()`'s sleep now, e.g. right after setting its stop event. Safe from a
        signal handler or another thread."""
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"!")

    def run(self, stop: threading.Event, *, doorbell: Doorbell | None = None) -> None:
        """Tick until `stop` is set, sleeping between ticks until an event or a due time.

        Whoever sets `stop` should call `wake()`, or the loop notices only when its sleep ends.
        """
        selector = selectors.DefaultSelector()
        selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        fd = self.executor.fileno()
        if fd is not None:
            selector.register(fd, selectors.EVENT_READ, "executor")
        if doorbell is not None:
            selector.register(doorbell.fileno(), selectors.EVENT_READ, "doorbell")
        try:
            while not stop.is_set():
                try:
                    report = self.tick()
                except (DraymanError, DBAPIError) as exc:
                    # e.g. the database restarting: keep the events, back off, try again
                    log.error("scheduler.tick_failed: %s", str(exc).splitlines()[0])
                    stop.wait(1.0)
                    continue
                if report.progressed:
                    continue  # more may be ready right away (slots freed, runs started)
                for key, _ in selector.select(timeout=self._sleep_for()):
                    if key.data == "doorbell" and doorbell is not None:
                        doorbell.drain()
                        self.mark_all_dirty()
                    elif key.data == "wake":
                        with contextlib.suppress(BlockingIOError):
                            os.read(self._wake_r, 64)
        finally:
            selector.close()

    def _sleep_for(self) -> float:
        now = self.clock()
        horizon = now + timedelta(seconds=self.settings.scheduler_poll_s)
        try:
            candidates = self._due_times()
        except DBAPIError:
            return 1.0  # the database is away: the next tick reports it
        due = min([horizon, *[c for c in candidates if c is not None]])
        until_due = max(0.0, (due - now).total_seconds())
        # the tick that wakes for a scheduled run or a retry must look for it
        next_run, next_retry = candidates
        if next_run is not None and next_run <= due:
            self._runs_check_at = min(self._runs_check_at, time.monotonic() + until_due)
        if next_retry is not None and next_retry <= due:
            self._retries_check_at = min(self._retries_check_at, time.monotonic() + until_due)
        mono = time.monotonic()
        wait = min(until_due, self._housekeeping_at - mono)
        if self._scan_interval_s < self.settings.scheduler_poll_s:  # no events: poll the store
            wait = min(wait, self._full_scan_at - mono)
        return max(0.0, wait)
