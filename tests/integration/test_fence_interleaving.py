"""The fence holds under interleaving (ADR 4, ADR 15): a worker's outcome racing a person's
cancel, clear or mark leaves the try history and the task instance telling the same story.

The concurrent tests take the first writer's locks in an open transaction on one connection,
start the second writer on another connection in a thread, wait until the database reports it
blocked on a lock (`pg_stat_activity` / `information_schema.INNODB_TRX`), then commit the first
and look at what the second did. SQLite has one writer at a time (`BEGIN IMMEDIATE`), so there
the same races are the two sequential orders, which the exhaustive sequential test covers.

The last test holds each writer to one lock order (task instances by ascending id): blocked on
the lower id, it must hold no higher one, else two writers can deadlock.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import Connection, Row, select, text
from sqlalchemy.exc import DBAPIError

from drayman.exceptions import ConflictError
from drayman.spec import DagSpec, TaskSpec
from drayman.states import TI_ACTIVE, StateChange, TIState, TryState
from drayman.store import actions, task_instances, tries, try_claims
from drayman.store.engine import Store
from drayman.store.schema import task_instance, task_try
from drayman.workloads import TryOutcome, TryStarted

if TYPE_CHECKING:
    from support.seed import Seed

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
BUNDLE = "f" * 64
WAIT_S = 30.0

# two independent tasks: the action hits "a"; an outcome batch carries "a" and "b". "b" comes
# first, so its task instance has the lower id while "a" sorts first by task id and gets the
# lower try id: an index on either would take their locks in the opposite order to their ids.
SPEC = DagSpec(
    dag_id="fence",
    fileloc="fence.py",
    tasks={t: TaskSpec(task_id=t, kind="python", upstream=(), retries=1) for t in ("b", "a")},
)

# -- a run with running tries ----------------------------------------------------------------


@dataclass(frozen=True)
class Running:
    """A started run whose task instances "a" and "b" each run (or are queued for) their
    first try."""

    run_id: str
    ti_a: int
    ti_b: int
    try_a: int
    try_b: int


def publish(seed: Seed, store: Store) -> None:
    with store.begin() as conn:
        seed.publish(conn, SPEC, bundle=BUNDLE, now=NOW)


def running_run(seed: Seed, store: Store, run_id: str, *, until: str = "running") -> Running:
    """A run whose task instances got as far as `until`: "pending" (no tries: their ids are
    0), "queued" or "running"."""
    with store.begin() as conn:
        pk = seed.run(conn, SPEC, run_id, bundle=BUNDLE, now=NOW)
        if until == "pending":
            a, b = (ti(conn, pk, task_id) for task_id in ("a", "b"))
            return Running(run_id, a.id, b.id, 0, 0)
        rows = conn.execute(
            select(task_instance)
            .where(task_instance.c.dag_run_id == pk)
            .order_by(task_instance.c.task_id)
        ).all()
        changes = [StateChange(r.id, TIState.PENDING, TIState.SCHEDULED) for r in rows]
        task_instances.apply_changes(conn, changes, NOW)
        scheduled = conn.execute(
            select(task_instance)
            .where(task_instance.c.dag_run_id == pk)
            .order_by(task_instance.c.task_id)
        ).all()
        new = tries.create_tries(
            conn, scheduled, log_paths=["a.log", "b.log"], worker_id=None, now=NOW
        )
        for one in new if until == "running" else ():
            assert tries.record_started(conn, TryStarted(one.try_id, "worker-1", 42, NOW))
    a, b = new
    return Running(run_id, a.ti_id, b.ti_id, a.try_id, b.try_id)


def ti(conn: Connection, run_pk: int, task_id: str) -> Row[Any]:
    return conn.execute(
        select(task_instance).where(
            task_instance.c.dag_run_id == run_pk, task_instance.c.task_id == task_id
        )
    ).one()


def outcome(try_id: int, *, ok: bool = True) -> TryOutcome:
    return TryOutcome(
        try_id=try_id,
        succeeded=ok,
        started_at=NOW,
        ended_at=NOW + timedelta(seconds=1),
        result_json='"done"' if ok else None,
        error=None if ok else "boom",
    )


def record(conn: Connection, *outcomes: TryOutcome) -> set[int]:
    """The try ids the store says it recorded."""
    recorded = tries.record_outcomes(
        conn, outcomes, retry_delays=dict.fromkeys((o.try_id for o in outcomes), 0.0)
    )
    return {r.try_id for r in recorded}


# -- the actions a person takes, by name -----------------------------------------------------

Action = Callable[[Connection, str], object]

ACTIONS: dict[str, Action] = {
    "cancel": lambda conn, run_id: actions.cancel_task_instance(
        conn, SPEC.dag_id, run_id, "a", now=LATER, by="ann"
    ),
    "clear": lambda conn, run_id: actions.clear_task_instances(
        conn, SPEC.dag_id, run_id, ["a"], now=LATER, by="ann"
    ),
    "mark_success": lambda conn, run_id: actions.mark_task_instances(
        conn, SPEC.dag_id, run_id, ["a"], state=TIState.SUCCESS, now=LATER, by="ann"
    ),
    "mark_failed": lambda conn, run_id: actions.mark_task_instances(
        conn, SPEC.dag_id, run_id, ["a"], state=TIState.FAILED, now=LATER, by="ann"
    ),
}
FENCE_REASON = {
    "cancel": "cancelled by ann",
    "clear": "cleared by ann",
    "mark_success": "marked success by ann",
    "mark_failed": "marked failed by ann",
}
STATE_AFTER = {
    "cancel": TIState.FAILED,
    "clear": TIState.PENDING,
    "mark_success": TIState.SUCCESS,
    "mark_failed": TIState.FAILED,
}


# -- what agreement between history and instance means ---------------------------------------


def history(conn: Connection, ti_id: int) -> tuple[Row[Any], list[Row[Any]]]:
    ti = conn.execute(select(task_instance).where(task_instance.c.id == ti_id)).one()
    rows = conn.execute(
        select(task_try).where(task_try.c.task_instance_id == ti_id).order_by(task_try.c.id)
    ).all()
    return ti, list(rows)


def assert_agree(conn: Connection, ti_id: int) -> None:
    """A task instance and its tries tell one story, whatever happened in what order."""
    ti, its_tries = history(conn, ti_id)
    unfinished = [t for t in its_tries if t.state in tries.UNFINISHED]
    if ti.state in TI_ACTIVE:
        assert [t.id for t in unfinished] == [ti.current_try_id], (ti, its_tries)
    else:
        assert unfinished == [], f"{ti.state} task instance has a try in flight: {unfinished}"
    for one in its_tries:
        if one.state == TryState.SUCCESS:
            assert one.error is None, one
        if one.state == TryState.FAILED:
            assert one.error, f"a failed try says why: {one}"
    current = next((t for t in its_tries if t.id == ti.current_try_id), None)
    if current is not None and ti.state == TIState.SUCCESS:
        assert current.state == TryState.SUCCESS, (ti, current)
    if current is not None and ti.state in (TIState.FAILED, TIState.UP_FOR_RETRY):
        assert current.state == TryState.FAILED, (ti, current)


def try_row(conn: Connection, try_id: int) -> Row[Any]:
    return conn.execute(select(task_try).where(task_try.c.id == try_id)).one()


def ti_state(conn: Connection, ti_id: int) -> str:
    return str(
        conn.execute(select(task_instance.c.state).where(task_instance.c.id == ti_id)).scalar()
    )


# -- two connections, one blocked on the other -----------------------------------------------


# How often to ask whether the second writer waits. InnoDB refreshes its INNODB_TRX cache
# only when nobody read it for 0.1 s (trx0i_s.cc, CACHE_MIN_IDLE_TIME_US): polled faster,
# MariaDB answers from a stale cache for ever and the wait is never seen.
POLL_S = {"postgresql": 0.005, "mysql": 0.15, "mariadb": 0.15}


class Second:
    """The second writer: `work(conn)` in its own transaction, on its own connection, in a
    thread; it keeps what the work returned or raised. `first` is the first writer's
    connection, rolled back if the test fails before it commits."""

    def __init__(self, store: Store, first: Connection, work: Callable[[Connection], Any]) -> None:
        self.store = store
        self.first = first
        self.work = work
        self.backend_id: int | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Second:
        self._thread.start()
        assert self._ready.wait(WAIT_S), "the second connection never opened"
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:  # the test failed while the first writer held its locks
            self.first.rollback()
        self._thread.join(WAIT_S)

    def _run(self) -> None:
        try:
            with self.store.begin() as conn:
                self.backend_id = backend_id(conn)
                self._ready.set()
                self.result = self.work(conn)
        except BaseException as exc:  # handed to the test, which raises or inspects it
            self.error = exc
        finally:
            self._ready.set()

    def wait_until_blocked(self) -> None:
        """Return once the database reports this connection waiting for a row lock; fail if
        it finished instead (it did not wait for the first writer) or never got there."""
        deadline = time.monotonic() + WAIT_S
        poll_s = POLL_S[self.store.engine.dialect.name]
        while time.monotonic() < deadline:
            assert self.backend_id is not None, self.error
            if waits_for_lock(self.store, self.backend_id):
                return
            self._thread.join(poll_s)
            assert self._thread.is_alive(), (
                f"the second writer finished without waiting for the first one's lock "
                f"(result {self.result!r}, error {self.error!r})"
            )
        pytest.fail(f"the second writer did not block on a lock within {WAIT_S} s")

    def finish(self) -> Any:
        self._thread.join(WAIT_S)
        assert not self._thread.is_alive(), "the second writer is still blocked"
        return self.result


def backend_id(conn: Connection) -> int:
    if conn.dialect.name == "postgresql":
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
    return int(conn.execute(text("SELECT CONNECTION_ID()")).scalar_one())


def waits_for_lock(store: Store, backend: int) -> bool:
    with store.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            wait = conn.execute(
                text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"),
                {"pid": backend},
            ).scalar()
            return bool(wait == "Lock")
        trx = conn.execute(
            text(
                "SELECT trx_state FROM information_schema.INNODB_TRX "
                "WHERE trx_mysql_thread_id = :tid"
            ),
            {"tid": backend},
        ).scalar()
        conn.rollback()
        return bool(trx == "LOCK WAIT")


@contextmanager
def first_writer(store: Store) -> Iterator[Connection]:
    """A connection in an open transaction; the test commits it when the second one waits."""
    conn = store.engine.connect()
    try:
        conn.begin()
        yield conn
    finally:
        conn.rollback()
        conn.close()


SERVERS = pytest.mark.parametrize("store", ["postgresql", "mysql"], indirect=True)


@SERVERS
@pytest.mark.parametrize("action", list(ACTIONS))
def test_an_outcome_that_waits_on_an_action_is_refused_and_erases_nothing(
    seed: Seed, store: Store, action: str
) -> None:
    publish(seed, store)
    run = running_run(seed, store, "r1")
    batch = (outcome(run.try_a), outcome(run.try_b))
    with first_writer(store) as first:
        ACTIONS[action](first, run.run_id)
        with Second(store, first, lambda conn: record(conn, *batch)) as second:
            second.wait_until_blocked()
            first.commit()
            recorded = second.finish()
    assert second.error is None
    assert recorded == {run.try_b}, "the fenced-off outcome must be reported as refused"
    with store.read() as conn:
        fenced = try_row(conn, run.try_a)
        assert fenced.state == TryState.FAILED
        assert FENCE_REASON[action] in (fenced.error or ""), fenced.error
        assert ti_state(conn, run.ti_a) == STATE_AFTER[action]
        assert try_row(conn, run.try_b).state == TryState.SUCCESS
        assert_agree(conn, run.ti_a)


@SERVERS
@pytest.mark.parametrize("action", list(ACTIONS))
def test_an_action_that_waits_on_an_outcome_finds_the_try_ended(
    seed: Seed, store: Store, action: str
) -> None:
    publish(seed, store)
    run = running_run(seed, store, "r1")
    with first_writer(store) as first:
        assert record(first, outcome(run.try_a)) == {run.try_a}
        with Second(store, first, lambda conn: ACTIONS[action](conn, run.run_id)) as second:
            second.wait_until_blocked()
            first.commit()
            second.finish()
    if action == "cancel":  # nothing is running any more: nothing to cancel
        assert isinstance(second.error, ConflictError), second.error
    else:
        assert second.error is None
    expected = {"cancel": TIState.SUCCESS, "mark_success": TIState.SUCCESS}
    with store.read() as conn:
        ended = try_row(conn, run.try_a)
        assert (ended.state, ended.error) == (TryState.SUCCESS, None)
        assert ti_state(conn, run.ti_a) == expected.get(action, STATE_AFTER[action])
        assert_agree(conn, run.ti_a)


# -- every order, one transaction after the other (SQLite too) -------------------------------


@dataclass
class Model:
    """What should become of task instance "a" and its try, step by step."""

    ok: bool
    state: TIState = TIState.RUNNING
    ended_by: str | None = None  # "outcome" or the action that fenced the try off

    def accepts(self, step: str) -> bool:
        """Apply `step`; whether the store should accept it."""
        active = self.state in TI_ACTIVE
        if step == "outcome":
            if active:
                self.state = TIState.SUCCESS if self.ok else TIState.UP_FOR_RETRY
                self.ended_by = "outcome"
            return active
        if step == "cancel" and not active:
            return False
        if active:
            self.ended_by = step
        self.state = STATE_AFTER[step]
        return True


ORDERS = [
    order
    for mark in ("mark_success", "mark_failed")
    for order in itertools.permutations(("outcome", "cancel", "clear", mark))
]


def take(store: Store, run: Running, step: str, ok: bool) -> bool:
    """One step in its own transaction; whether the store took it."""
    with store.begin() as conn:
        if step == "outcome":
            return record(conn, outcome(run.try_a, ok=ok)) == {run.try_a}
        try:
            ACTIONS[step](conn, run.run_id)
        except ConflictError:
            return False
        return True


@pytest.mark.slow
@pytest.mark.parametrize("ok", [True, False], ids=["succeeded", "failed"])
def test_any_order_of_outcome_cancel_clear_and_mark_keeps_history_and_instance_agreeing(
    seed: Seed, store: Store, ok: bool
) -> None:
    publish(seed, store)
    for n, order in enumerate(ORDERS):
        run = running_run(seed, store, f"r{n}")
        model = Model(ok)
        for step in order:
            assert take(store, run, step, ok) == model.accepts(step), (order, step)
            with store.read() as conn:
                assert ti_state(conn, run.ti_a) == model.state, (order, step)
                assert_agree(conn, run.ti_a)
        with store.read() as conn:
            ended = try_row(conn, run.try_a)
        if model.ended_by == "outcome":
            expected = (TryState.SUCCESS, None) if ok else (TryState.FAILED, "boom")
            assert (ended.state, ended.error) == expected, order
        else:
            assert ended.state == TryState.FAILED, order
            assert FENCE_REASON[str(model.ended_by)] in (ended.error or ""), (order, ended.error)


# -- one lock order for every writer ---------------------------------------------------------

BOTH = ["a", "b"]
# On a table of a few rows InnoDB scans the primary key, in id order, whatever the query: the
# production case, where it reads by an index in that index's order, needs some more rows.
FILLER_RUNS = 20
WRITERS: dict[str, Callable[[Connection, Running], object]] = {
    "outcomes": lambda conn, run: record(conn, outcome(run.try_a), outcome(run.try_b)),
    "clear": lambda conn, run: actions.clear_task_instances(
        conn, SPEC.dag_id, run.run_id, BOTH, now=LATER, by="ann"
    ),
    "mark": lambda conn, run: actions.mark_task_instances(
        conn, SPEC.dag_id, run.run_id, BOTH, state=TIState.FAILED, now=LATER, by="ann"
    ),
    "starts": lambda conn, run: tries.record_started_many(
        conn, [TryStarted(t, "worker-1", 42, NOW) for t in (run.try_a, run.try_b)]
    ),
    "claim": lambda conn, run: try_claims.record_claimed(
        conn,
        [t.try_id for t in try_claims.lock_claimable(conn, [run.try_a, run.try_b])],
        started_at=NOW,
        hostname="worker-2",
        pid=43,
        worker_id=None,
    ),
}
# the scheduler's planner, one statement per (old, new) pair: here "a", the higher id, first
WRITERS["plan"] = lambda conn, run: task_instances.apply_changes(
    conn,
    [
        StateChange(run.ti_a, TIState.PENDING, TIState.SCHEDULED),
        StateChange(run.ti_b, TIState.PENDING, TIState.UPSTREAM_FAILED),
    ],
    NOW,
)
UNTIL = {"starts": "queued", "claim": "queued", "plan": "pending"}  # the others: "running"


def lockable(store: Store, ti_id: int) -> bool:
    """Whether another transaction could lock this task instance right now."""
    with store.engine.connect() as conn, conn.begin():
        try:
            conn.execute(
                select(task_instance.c.id)
                .where(task_instance.c.id == ti_id)
                .with_for_update(nowait=True)
            )
        except DBAPIError:
            return False
    return True


@SERVERS
@pytest.mark.parametrize("writer", list(WRITERS))
def test_every_writer_locks_task_instances_in_ascending_id_order(
    seed: Seed, store: Store, writer: str
) -> None:
    """Blocked on the lower id, a writer holds no higher one: two writers whose sets overlap
    can wait on each other, never in a circle (ADR 15)."""
    publish(seed, store)
    run = running_run(seed, store, "r1", until=UNTIL.get(writer, "running"))
    for n in range(FILLER_RUNS):  # enough rows that InnoDB reads through the indexes
        running_run(seed, store, f"filler{n}")
    low, high = sorted((run.ti_a, run.ti_b))
    assert (low, high) == (run.ti_b, run.ti_a)  # SPEC makes ids and names disagree
    assert run.try_a <= run.try_b  # ... and ids and try ids
    with first_writer(store) as first:
        task_instances.lock_by_id(first, [low])
        with Second(store, first, lambda conn: WRITERS[writer](conn, run)) as second:
            second.wait_until_blocked()
            assert lockable(store, high), f"{writer} locked {high} before {low}"
            first.commit()
            second.finish()
    assert second.error is None
    with store.read() as conn:
        assert_agree(conn, run.ti_a)
        assert_agree(conn, run.ti_b)
        if UNTIL.get(writer) == "queued":
            assert {ti_state(conn, run.ti_a), ti_state(conn, run.ti_b)} == {TIState.RUNNING}
