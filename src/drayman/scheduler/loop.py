"""The scheduler loop: `tick(now)` is one iteration; `run()` only adds waiting and stopping.

A tick records what the executor reported, creates due runs, starts queued runs, advances
the runs that changed (the planner decides), and queues ready task instances, all in one
transaction, then hands the new workloads to the executor. Between ticks it sleeps until an
event arrives (a try finished, somebody triggered a run) or the next thing falls due, with a
fallback poll so that nothing depends on an event being delivered.

Its rooms: `runs` (creating and starting runs), `advancing` (planning running runs),
`queueing` (new tries within the `capacity`), `liveness` (heartbeats, lost tries, resends),
`caches` (specs and runs) and `clock`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from drayman.config import Settings
from drayman.exceptions import DraymanError
from drayman.executors.base import Executor
from drayman.scheduler import recording
from drayman.scheduler import runs as run_creation
from drayman.scheduler.advancing import Advancing
from drayman.scheduler.caches import RunCache, SpecCache
from drayman.scheduler.capacity import Capacity, capacity_for
from drayman.scheduler.clock import LONG_AGO
from drayman.scheduler.liveness import Liveness
from drayman.scheduler.queueing import Queueing
from drayman.states import RunState
from drayman.store import components, dispatch, pools
from drayman.store import dags as dag_store
from drayman.store import runs as run_store
from drayman.store import task_instances as ti_store
from drayman.store.engine import Connection, DatabaseError, Store
from drayman.store.tries import RetrySubject
from drayman.wakeup import Doorbell
from drayman.workloads import RunsChanged, TryOutcome, TryStarted, Workload

log = logging.getLogger("drayman.scheduler")


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
        capacity: Capacity | None = None,
        clock: Callable[[], datetime] | None = None,
        immediate_retries: bool = False,
    ) -> None:
        """`executor_name` is recorded with the scheduler's component; `capacity` says where
        tries run (by default, what `executor_name` implies: `capacity_for`)."""
        self.settings = settings
        self.store = store
        self.executor = executor
        self.executor_name = executor_name
        self.capacity = capacity or capacity_for(executor_name, store, settings)
        self.clock = clock or store.now
        self.immediate_retries = immediate_retries  # `dags test`: no waiting between tries
        self.hostname = socket.gethostname()
        self.scheduler_id: int | None = None
        self.worker_id: int | None = None
        self.specs = SpecCache(store)
        self.runs = RunCache(store)
        self.liveness = Liveness(
            settings,
            store,
            executor,
            self.capacity,
            spec_of=self.specs,
            retry_delay=self._retry_delay,
            hostname=self.hostname,
        )
        self.advancing = Advancing(self.specs, self.runs)
        self.queueing = Queueing(
            settings, store, executor, self.capacity, self.specs, self.runs, hostname=self.hostname
        )
        self._dirty: set[int] = set()
        # Deadlines are times of the clock `tick(now)` is given, never of another: a test
        # drives every one of them by passing later times (see `_notice_clock`).
        self._last_now = LONG_AGO
        self._full_scan_at = LONG_AGO
        # when to look for due scheduled runs and queued runs to start: not on every tick, only
        # when something may have changed (mark_all_dirty, a run finishing, _sleep_for) or polling
        self._runs_check_at = LONG_AGO
        self._retries_check_at = LONG_AGO  # when to look for retries whose wait is over
        self._check_ended = False  # a doorbell rang: ask which of our tries the store ended
        self.run_listeners: list[Callable[[Any], None]] = []  # called as runs finish
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._unrecorded: list[TryStarted | TryOutcome] = []
        self._to_resend: list[Workload] = []  # unclaimed tries to send again (remote workers)
        self._wake_times: tuple[datetime, list[datetime | None]] | None = None
        # how often every running run is re-planned; shorter for an executor without events
        self._scan_interval_s = settings.scheduler_poll_s

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Register this scheduler (and, when it runs its tries, its worker); start the
        executor."""
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
            if self.capacity.runs_locally:  # its tries are recorded against its own worker
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
        Workloads go to the executor only after their tries are committed. `now` is the whole
        truth: every interval (housekeeping, heartbeats, liveness, resends, fleet and pool
        reads, polls) is measured on it, so a test drives them all by passing later times.
        """
        now = now or self.clock()
        self._notice_clock(now)
        report = TickReport()
        self._take_events()
        if self._unrecorded:
            # committed on their own, and kept until they are: whatever fails later in the
            # tick, or if the database is down for a while, no outcome is lost
            with self.store.begin() as conn:
                self._record_events(conn, self._unrecorded, report)
            self._unrecorded.clear()
        if not self._may_have_work(report, now):
            return report
        with self.store.begin() as conn:
            if self._check_ended:
                self._check_ended = False
                self.liveness.stop_ended_tries(conn)
            self._housekeeping(conn, now, report)
            self._find_due_retries(conn, now)
            if now >= self._runs_check_at:
                self._runs_check_at = now + timedelta(seconds=self.settings.scheduler_poll_s)
                report.runs_created += run_creation.create_due_runs(conn, self.specs, now)
                self._start_queued_runs(conn, now, report)
                if report.runs_created:
                    self._runs_check_at = LONG_AGO  # a DAG catching up may have more due
            callbacks = self._advance_runs(conn, now, report)
            queued = self.queueing.queue(conn, now, self.worker_id)
        report.queued += queued.queued
        self._dirty |= queued.dirty
        resend, self._to_resend = self._to_resend, []
        if queued.workloads or callbacks or resend:
            self.executor.submit([*queued.workloads, *callbacks, *resend])
        if report.recorded or report.runs_created or report.runs_finished or report.lost:
            self._wake_times = None  # retries and next runs may have moved
        return report

    def _notice_clock(self, now: datetime) -> None:
        """A clock that went back (a test's, or the host's stepped by NTP) would hold every
        deadline set from a later time: they are all due again instead."""
        if now < self._last_now:
            self._full_scan_at = self._runs_check_at = self._retries_check_at = LONG_AGO
            self.liveness.reset()
            self.queueing.reset()
            self._wake_times = None
        self._last_now = now

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

    def _may_have_work(self, report: TickReport, now: datetime) -> bool:
        """Whether the decision transaction can change anything; a tick right after a burst
        of queueing, with no event since, skips it instead of asking the database for
        nothing. The fallback poll and housekeeping deadlines still bound every wait."""
        return bool(
            report.recorded
            or self._dirty
            or now >= self._runs_check_at
            or now >= self._retries_check_at
            or now >= self._full_scan_at
            or now >= self.liveness.due_at
            or (self.queueing.schedulable_left and self.executor.open_slots() > 0)
        )

    def mark_all_dirty(self) -> None:
        """Something outside changed the store (a trigger, a pause, a new bundle): on the next
        tick, look for due and queued runs and re-plan every active run."""
        self._full_scan_at = LONG_AGO
        self._runs_check_at = LONG_AGO
        self._wake_times = None
        self._check_ended = True  # it may have been a cancel

    # -- recording ---------------------------------------------------------------------------

    def _record_events(
        self, conn: Connection, events: Sequence[TryStarted | TryOutcome], report: TickReport
    ) -> None:
        for item in recording.record_events(conn, events, retry_delay=self._retry_delay):
            report.recorded += 1
            self._dirty.add(item.dag_run_id)

    def _retry_delay(self, subject: RetrySubject) -> float:
        if self.immediate_retries:
            return 0.0
        spec = self.specs(subject.dag_id, subject.bundle_version)
        return dispatch.task_retry_delay_s(spec, subject)

    # -- liveness and retries ----------------------------------------------------------------

    def _housekeeping(self, conn: Connection, now: datetime, report: TickReport) -> None:
        checked = self.liveness.check(conn, now, (self.scheduler_id, self.worker_id))
        if checked is None:
            return
        report.lost += checked.lost
        self._dirty |= checked.dirty
        self._to_resend = checked.resend
        self._retries_check_at = LONG_AGO  # and look for due retries, as a fallback

    def _find_due_retries(self, conn: Connection, now: datetime) -> None:
        """Runs holding a retry whose wait is over get planned (and the retry queued)."""
        if now < self._retries_check_at:
            return
        self._retries_check_at = now + timedelta(seconds=self.settings.scheduler_poll_s)
        for row in ti_store.retries_due(conn, now):
            self._dirty.add(row.dag_run_id)

    # -- runs --------------------------------------------------------------------------------

    def _start_queued_runs(self, conn: Connection, now: datetime, report: TickReport) -> None:
        for run in run_creation.start_queued_runs(conn, self.specs, now):
            self.runs.remember(run.id, run.dag_id, run.bundle_version)
            self._dirty.add(run.id)
            report.runs_started += 1

    def _advance_runs(self, conn: Connection, now: datetime, report: TickReport) -> list[Workload]:
        """Re-plan the runs that changed (every running run each scan interval); the DAG
        callbacks of the runs that finished."""
        if now >= self._full_scan_at:
            runs = run_store.running_runs(conn)
            self._full_scan_at = now + timedelta(seconds=self._scan_interval_s)
        else:
            runs = run_store.running_runs(conn, self._dirty)
        self._dirty.clear()
        advanced = self.advancing.advance(conn, runs, now)
        self._dirty |= advanced.dirty
        for run, state in advanced.finished:
            report.runs_finished += 1
            report.finished_runs.append((run.id, state))
            self._runs_check_at = LONG_AGO  # a queued run of this DAG may start now
            for listener in self.run_listeners:
                listener(run)
        return advanced.callbacks

    def _due_times(self, now: datetime) -> list[datetime | None]:
        """The next scheduled run and the next retry, read again only when they may have
        changed (a tick recorded or created something) or every scheduler_poll_s."""
        if self._wake_times is None or now >= self._wake_times[0]:
            with self.store.read() as conn:
                times = [dag_store.earliest_next_run(conn), ti_store.next_retry_time(conn)]
            self._wake_times = (now + timedelta(seconds=self.settings.scheduler_poll_s), times)
        return self._wake_times[1]

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
                except (DraymanError, DatabaseError) as exc:
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
            candidates = self._due_times(now)
        except DatabaseError:
            return 1.0  # the database is away: the next tick reports it
        due = min([horizon, *[c for c in candidates if c is not None]])
        until_due = max(0.0, (due - now).total_seconds())
        # the tick that wakes for a scheduled run or a retry must look for it
        next_run, next_retry = candidates
        wake_at = now + timedelta(seconds=until_due)
        if next_run is not None and next_run <= due:
            self._runs_check_at = min(self._runs_check_at, wake_at)
        if next_retry is not None and next_retry <= due:
            self._retries_check_at = min(self._retries_check_at, wake_at)
        wait = min(until_due, (self.liveness.due_at - now).total_seconds())
        if self._scan_interval_s < self.settings.scheduler_poll_s:  # no events: poll the store
            wait = min(wait, (self._full_scan_at - now).total_seconds())
        return max(0.0, wait)
