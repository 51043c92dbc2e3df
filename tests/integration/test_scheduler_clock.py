"""`Scheduler.tick(now)` is the whole truth: heartbeats, liveness, resends of unclaimed tries
and queue caps all follow the `now` each tick is given. Driven tick by tick on a real store,
with a clock that only moves when the test moves it: no sleeping, no patched constants.

The executor is a `Recorder`: it runs nothing and remembers what the scheduler sent it, the
way remote workers that write the store themselves look to the scheduler (events: none).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import func, select, update

from drayman.config import Settings
from drayman.scheduler.capacity import (
    LIVE_WORKERS_READ_S,
    Capacity,
    FleetCapacity,
    LocalCapacity,
)
from drayman.scheduler.loop import Scheduler
from drayman.spec import DagSpec, TaskSpec
from drayman.states import TIState, TryState
from drayman.store import components
from drayman.store.engine import Store
from drayman.store.schema import component, task_instance, task_try
from drayman.workloads import ExecutorEvent, TryWorkload, Workload

if TYPE_CHECKING:
    from conftest import Seed

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
BUNDLE = "c" * 64
SPEC = DagSpec(
    dag_id="wide",
    fileloc="wide.py",
    schedule=None,
    max_active_tasks=100,
    tasks={f"t{i}": TaskSpec(task_id=f"t{i}", kind="python", retries=1) for i in range(6)},
)
INTERVAL_S = 1.0  # heartbeat_interval_s
TIMEOUT_S = 5.0  # heartbeat_timeout_s
QUEUED_TIMEOUT_S = 10.0


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@dataclass
class Recorder:
    """An executor whose workers are elsewhere: it sends nothing anywhere and reports no
    events; the test reads what it was handed."""

    slots: int
    sent: list[Workload] = field(default_factory=list)
    heartbeats: int = 0

    def start(self) -> None: ...

    def open_slots(self) -> int:
        return self.slots

    def submit(self, workloads: Sequence[Workload]) -> None:
        self.sent.extend(workloads)

    def events(self) -> list[ExecutorEvent]:
        return []

    def fileno(self) -> int | None:
        return None

    def running_try_ids(self) -> list[int]:
        return []

    def cancel(self, try_id: int) -> None: ...

    def heartbeat(self) -> None:
        self.heartbeats += 1

    def stop(self, grace_s: float) -> None: ...

    def try_ids(self) -> list[int]:
        return sorted(w.try_id for w in self.sent if isinstance(w, TryWorkload))


@dataclass
class Remote:
    """A scheduler whose tries run on remote workers, at T0, and a started run of SPEC."""

    store: Store
    scheduler: Scheduler
    executor: Recorder

    def tick(self, seconds: float) -> None:
        self.scheduler.tick(at(seconds))

    def heartbeat_at(self, component_id: int | None) -> datetime:
        with self.store.read() as conn:
            value = conn.execute(
                select(component.c.heartbeat_at).where(component.c.id == component_id)
            ).scalar_one()
        assert isinstance(value, datetime)
        return value

    def queued(self) -> int:
        with self.store.read() as conn:
            count = conn.execute(
                select(func.count()).where(task_instance.c.state == TIState.QUEUED)
            ).scalar_one()
        return int(count)

    def register_worker(self, seconds: float, concurrency: int) -> int:
        """A live worker as `drayman worker` registers itself, heartbeating at `seconds`."""
        with self.store.begin() as conn:
            return components.register(
                conn,
                kind="worker",
                hostname="far-host",
                pid=1,
                executor="celery",
                queues=["default"],
                concurrency=concurrency,
                now=at(seconds) + self.db_offset(conn),
            )

    def db_offset(self, conn: Any) -> timedelta:
        """How far the database's clock is from ours (the scheduler adds it to `now`)."""
        return self.store.db_now(conn) - self.store.now()


@pytest.fixture
def make(seed: Seed, store: Store, tmp_path: Path) -> Iterator[Callable[[Capacity], Remote]]:
    """A started scheduler with a `Recorder` for an executor and the given capacity, at T0,
    and a started run of SPEC."""
    settings = Settings(
        home=tmp_path / "home",
        dags_folder=tmp_path / "dags",
        database_url=store.url,
        parallelism=2,
        heartbeat_interval_s=INTERVAL_S,
        heartbeat_timeout_s=TIMEOUT_S,
        queued_timeout_s=QUEUED_TIMEOUT_S,
        scheduler_poll_s=1.0,
    )
    with store.begin() as conn:
        seed.publish(conn, SPEC, bundle=BUNDLE, now=T0)
        seed.run(conn, SPEC, "r1", bundle=BUNDLE, now=T0)
    started: list[Scheduler] = []

    def build(capacity: Capacity) -> Remote:
        executor = Recorder(slots=settings.parallelism)
        scheduler = Scheduler(settings, store, executor, capacity=capacity, clock=lambda: T0)
        scheduler.start()
        started.append(scheduler)
        return Remote(store, scheduler, executor)

    yield build
    for scheduler in started:
        scheduler.stop(grace_s=0)


@pytest.fixture
def remote(make: Callable[[Capacity], Remote], store: Store, tmp_path: Path) -> Remote:
    """A scheduler whose tries run on remote workers."""
    return make(FleetCapacity(store, Settings(heartbeat_timeout_s=TIMEOUT_S)))


def test_heartbeats_follow_the_clock_tick_is_given(remote: Remote) -> None:
    remote.tick(0)
    first = remote.heartbeat_at(remote.scheduler.scheduler_id)
    assert remote.executor.heartbeats == 1
    remote.tick(INTERVAL_S / 2)  # not due yet
    assert remote.heartbeat_at(remote.scheduler.scheduler_id) == first
    assert remote.executor.heartbeats == 1
    remote.tick(INTERVAL_S)
    second = remote.heartbeat_at(remote.scheduler.scheduler_id)
    assert abs(second - first - timedelta(seconds=INTERVAL_S)) < timedelta(seconds=0.5)
    assert remote.executor.heartbeats == 2
    for tick in range(2, 12):
        remote.tick(tick * INTERVAL_S)
    assert remote.executor.heartbeats == 12


def test_a_worker_is_dead_and_its_try_lost_once_the_clock_passes_its_timeout(
    remote: Remote,
) -> None:
    worker = remote.register_worker(0, concurrency=1)
    remote.tick(0)
    try_id = remote.executor.try_ids()[0]
    with remote.store.begin() as conn:  # the worker claimed it, and then went silent
        conn.execute(
            update(task_try)
            .where(task_try.c.id == try_id)
            .values(state=TryState.RUNNING, worker_id=worker, start_date=T0)
        )
        conn.execute(
            update(task_instance)
            .where(task_instance.c.current_try_id == try_id)
            .values(state=TIState.RUNNING)
        )
    for seconds in range(1, int(TIMEOUT_S)):  # silent, but not for long enough
        remote.tick(seconds)
    assert try_state(remote.store, try_id) == (TryState.RUNNING, None)
    assert component_state(remote.store, worker) == "running"

    remote.tick(TIMEOUT_S + INTERVAL_S)
    state, error = try_state(remote.store, try_id)
    assert state == TryState.FAILED
    assert error == "the worker on far-host stopped heartbeating: try lost"
    assert component_state(remote.store, worker) == "stopped"
    # the scheduler heartbeat on every housekeeping: it is alive, whatever the clock says
    assert component_state(remote.store, remote.scheduler.scheduler_id) == "running"


def test_an_unclaimed_try_is_sent_again_once_per_queued_timeout(remote: Remote) -> None:
    remote.tick(0)
    first = remote.executor.try_ids()
    assert len(first) == 2  # the cap: parallelism, as no worker serves the queue
    for seconds in range(1, int(QUEUED_TIMEOUT_S)):  # unclaimed, but not for long enough
        remote.tick(seconds)
    assert remote.executor.try_ids() == first

    remote.tick(QUEUED_TIMEOUT_S + INTERVAL_S)
    assert remote.executor.try_ids() == sorted(first * 2)  # sent again, the same tries
    for seconds in range(int(QUEUED_TIMEOUT_S) + 2, 2 * int(QUEUED_TIMEOUT_S) + 1):
        remote.tick(seconds)  # unclaimed still, but sent again less than a timeout ago
    assert remote.executor.try_ids() == sorted(first * 2)
    remote.tick(2 * QUEUED_TIMEOUT_S + 2 * INTERVAL_S)
    assert remote.executor.try_ids() == sorted(first * 3)


def test_the_queue_cap_follows_the_workers_live_at_the_clock_tick_is_given(
    remote: Remote, seed: Seed
) -> None:
    remote.tick(0)
    assert remote.queued() == 2  # nobody serves the queue: the floor, parallelism
    remote.register_worker(0, concurrency=3)
    remote.tick(LIVE_WORKERS_READ_S / 2)  # the fleet was read at 0: not yet again
    assert remote.queued() == 2
    remote.tick(LIVE_WORKERS_READ_S)
    assert remote.queued() == 6  # twice the worker's concurrency

    # r1's tries end, r2 waits; the worker stops heartbeating: once it is dead (by the
    # clock tick is given) the cap falls back to the floor
    with remote.store.begin() as conn:
        conn.execute(update(task_try).values(state=TryState.SUCCESS))
        conn.execute(update(task_instance).values(state=TIState.SUCCESS))
        seed.run(conn, SPEC, "r2", bundle=BUNDLE, now=T0)
    remote.scheduler.mark_all_dirty()
    remote.tick(TIMEOUT_S + 2 * LIVE_WORKERS_READ_S)
    assert remote.queued() == 2


def test_a_clock_that_goes_back_makes_every_deadline_due_again(remote: Remote) -> None:
    remote.tick(100)
    remote.tick(100 + INTERVAL_S / 2)
    assert remote.executor.heartbeats == 1
    remote.tick(50)  # e.g. the host's clock stepped back: not a heartbeat 51 s from now
    assert remote.executor.heartbeats == 2


def test_a_local_capacity_owns_its_tries_and_never_sends_them_again(
    make: Callable[[Capacity], Remote],
) -> None:
    local = make(LocalCapacity())
    assert local.scheduler.worker_id is not None  # the worker its tries are recorded against
    local.tick(0)
    sent = local.executor.try_ids()
    assert len(sent) == 2  # the executor's open slots, exact: no cap from the store
    with local.store.read() as conn:
        workers = conn.execute(select(task_try.c.worker_id)).scalars().all()
    assert set(workers) == {local.scheduler.worker_id}
    for seconds in range(1, 2 * int(QUEUED_TIMEOUT_S) + 2):
        local.tick(seconds)  # QUEUED all along (nothing runs them here), never sent again
    sent = local.executor.try_ids()
    assert len(sent) == len(set(sent)) == len(SPEC.tasks)  # each try once (open slots: 2 a tick)


def try_state(store: Store, try_id: int) -> tuple[str, str | None]:
    with store.read() as conn:
        row = conn.execute(
            select(task_try.c.state, task_try.c.error).where(task_try.c.id == try_id)
        ).one()
    return row.state, row.error


def component_state(store: Store, component_id: int | None) -> str:
    with store.read() as conn:
        state = conn.execute(
            select(component.c.state).where(component.c.id == component_id)
        ).scalar_one()
    return str(state)
