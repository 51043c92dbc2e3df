"""Runs, task instances and tries in the store, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Connection, Row, select, update
from sqlalchemy.exc import StatementError

from drayman.exceptions import ConflictError
from drayman.spec import DagSpec, ParsedDag, TaskSpec, result_ref
from drayman.states import RunState, RunType, StateChange, TIState, TryState
from drayman.store import components, dags, runs, task_instances, tries, try_liveness
from drayman.store.engine import Store
from drayman.store.schema import metadata, task_instance, task_try
from drayman.store.types import UtcDateTime
from drayman.workloads import TryOutcome, TryStarted

NOW = datetime(2024, 5, 1, 12, 0, 0, 250_000, tzinfo=UTC)
BUNDLE = "b" * 64
SOURCE = "from drayman import DAG\n# the DAG file\n"


def task(task_id: str, *upstream: str, **options: Any) -> TaskSpec:
    return TaskSpec(task_id=task_id, kind="python", upstream=upstream, **options)


def dag(*tasks: TaskSpec, dag_id: str = "etl") -> DagSpec:
    return DagSpec(
        dag_id=dag_id,
        fileloc=f"{dag_id}.py",
        schedule="@daily",
        max_active_tasks=4,
        tasks={t.task_id: t for t in tasks},
    )


ETL = dag(
    task("extract", retries=2, retry_delay_s=30.0),
    task("transform", "extract", pool="warehouse", pool_slots=2, queue="heavy", priority=5),
    task("load", "transform"),
)


def add_dag(conn: Connection, spec: DagSpec) -> None:
    dags.record_parse(
        conn, bundle_version=BUNDLE, dags=[ParsedDag(spec, SOURCE)], errors=[], now=NOW
    )


def new_run(
    conn: Connection,
    spec: DagSpec = ETL,
    *,
    run_id: str = "manual__1",
    start: bool = True,
    logical_date: datetime = NOW,
) -> Row[Any]:
    pk = runs.create_run(
        conn,
        dag_id=spec.dag_id,
        run_id=run_id,
        run_type=RunType.MANUAL,
        bundle_version=BUNDLE,
        logical_date=logical_date,
        data_interval_start=logical_date,
        data_interval_end=logical_date,
        run_after=logical_date,
        conf={"day": "monday"},
        params={"day": "monday"},
        triggered_by="test",
        now=NOW,
    )
    run = runs.get_run_by_id(conn, pk)
    if start:
        runs.start_run(conn, run, spec, NOW)
        run = runs.get_run_by_id(conn, pk)
    return run


def seeded(store: Store, spec: DagSpec = ETL) -> Row[Any]:
    """A DAG with one started run; returns the run."""
    with store.begin() as conn:
        add_dag(conn, spec)
        return new_run(conn, spec)


def ti(conn: Connection, run: Row[Any], task_id: str, map_index: int = -1) -> Row[Any]:
    return conn.execute(
        select(task_instance).where(
            task_instance.c.dag_run_id == run.id,
            task_instance.c.task_id == task_id,
            task_instance.c.map_index == map_index,
        )
    ).one()


def tis_of(conn: Connection, run: Row[Any]) -> list[Row[Any]]:
    return list(
        conn.execute(
            select(task_instance)
            .where(task_instance.c.dag_run_id == run.id)
            .order_by(task_instance.c.task_id, task_instance.c.map_index)
        )
    )


def try_row(conn: Connection, try_id: int) -> Row[Any]:
    return conn.execute(select(task_try).where(task_try.c.id == try_id)).one()


def schedule(conn: Connection, row: Row[Any], old: TIState = TIState.PENDING) -> Row[Any]:
    assert task_instances.apply_changes(conn, [StateChange(row.id, old, TIState.SCHEDULED)], NOW)
    return conn.execute(select(task_instance).where(task_instance.c.id == row.id)).one()


def queue(conn: Connection, row: Row[Any], worker_id: int | None = None) -> tries.NewTry:
    """Move a SCHEDULED task instance to QUEUED with a new try."""
    (new,) = tries.create_tries(
        conn, [row], log_paths=[f"{row.task_id}.log"], worker_id=worker_id, now=NOW
    )
    return new


def outcome(
    try_id: int,
    *,
    succeeded: bool = True,
    result: str | None = None,
    ended_at: datetime = NOW + timedelta(seconds=10),
) -> TryOutcome:
    return TryOutcome(
        try_id=try_id,
        succeeded=succeeded,
        started_at=NOW + timedelta(seconds=1),
        ended_at=ended_at,
        hostname="worker-1",
        pid=4242,
        exit_code=0 if succeeded else 1,
        error=None if succeeded else "ValueError: boom",
        result_json=result,
    )


NO_DELAYS: dict[int, float] = {}  # no retry may be due: one that is raises ValueError


def finish(conn: Connection, row: Row[Any], *, result: str | None = None, ok: bool = True) -> None:
    """Take a PENDING or SCHEDULED task instance through one try to its outcome."""
    if row.state == TIState.PENDING:
        row = schedule(conn, row)
    new = queue(conn, row)
    assert tries.record_outcome(
        conn, outcome(new.try_id, succeeded=ok, result=result), retry_delays={new.try_id: 60}
    )


# -- DAGs and runs ------------------------------------------------------------------------------


def test_record_parse_stores_the_dag_and_its_spec(store: Store) -> None:
    with store.begin() as conn:
        add_dag(conn, ETL)

    with store.read() as conn:
        row = dags.get_dag(conn, "etl")
        assert (row.bundle_version, row.fileloc, row.schedule) == (BUNDLE, "etl.py", "@daily")
        assert row.is_active is True
        assert row.is_paused is False
        assert row.max_active_tasks == 4
        assert dags.load_spec(conn, "etl", BUNDLE) == ETL
        assert dags.load_source(conn, "etl", BUNDLE) == SOURCE


def test_create_run_inserts_a_queued_run(store: Store) -> None:
    with store.begin() as conn:
        add_dag(conn, ETL)
        run = new_run(conn, start=False)

    assert run.state == RunState.QUEUED
    assert (run.dag_id, run.run_id, run.run_type) == ("etl", "manual__1", "manual")
    assert run.logical_date == NOW
    assert run.start_date is None
    with store.read() as conn:
        assert [r.id for r in runs.runs_to_start(conn)] == [run.id]
        assert task_instances.of_runs(conn, [run.id]) == []


def test_a_duplicate_run_id_is_a_conflict_and_leaves_the_transaction_usable(store: Store) -> None:
    with store.begin() as conn:
        add_dag(conn, ETL)
        first = new_run(conn, start=False)
        with pytest.raises(ConflictError, match="DAG 'etl' already has a run 'manual__1'"):
            new_run(conn, start=False)
        # the failed insert was rolled back to a savepoint, not the whole transaction
        assert runs.get_run(conn, "etl", "manual__1").id == first.id
        new_run(conn, run_id="manual__2", start=False)

    with store.read() as conn:
        assert sorted(r.run_id for r in runs.list_runs(conn, dag_id="etl")) == [
            "manual__1",
            "manual__2",
        ]


def test_start_run_creates_a_pending_task_instance_per_task(store: Store) -> None:
    run = seeded(store)

    assert run.state == RunState.RUNNING
    assert run.start_date == NOW
    with store.read() as conn:
        rows = {row.task_id: row for row in tis_of(conn, run)}
    assert set(rows) == {"extract", "transform", "load"}
    for row in rows.values():
        assert row.state == TIState.PENDING
        assert (row.map_index, row.try_number, row.current_try_id) == (-1, 0, None)
    assert rows["extract"].max_tries == 3
    transform = rows["transform"]
    assert (transform.max_tries, transform.pool, transform.pool_slots) == (1, "warehouse", 2)
    assert (transform.queue, transform.priority) == ("heavy", 5)
    assert (rows["load"].pool, rows["load"].queue) == ("default_pool", "default")


def test_starting_a_run_that_is_already_running_does_nothing(store: Store) -> None:
    run = seeded(store)
    with store.begin() as conn:
        # a second scheduler that read the run while it was still QUEUED
        runs.start_run(conn, run, ETL, NOW + timedelta(minutes=1))

    with store.read() as conn:
        assert len(tis_of(conn, run)) == 3
        assert runs.get_run_by_id(conn, run.id).start_date == NOW


def test_a_dag_without_tasks_starts_a_run_without_task_instances(store: Store) -> None:
    run = seeded(store, dag(dag_id="empty"))

    assert run.state == RunState.RUNNING
    with store.read() as conn:
        assert tis_of(conn, run) == []


def test_finish_run_refuses_a_run_with_an_unfinished_task_instance(store: Store) -> None:
    # e.g. a user cleared a task after the planner decided the run was over
    run = seeded(store)
    with store.begin() as conn:
        assert runs.finish_run(conn, run.id, RunState.SUCCESS, NOW) is False
        assert runs.get_run_by_id(conn, run.id).state == RunState.RUNNING


def test_finish_run_is_guarded(store: Store) -> None:
    run = seeded(store, dag(dag_id="empty"))
    later = NOW + timedelta(minutes=5)
    with store.begin() as conn:
        assert runs.finish_run(conn, run.id, RunState.SUCCESS, later) is True
        assert runs.finish_run(conn, run.id, RunState.FAILED, later) is False
        row = runs.get_run_by_id(conn, run.id)
    assert (row.state, row.end_date) == (RunState.SUCCESS, later)


# -- guarded state changes ----------------------------------------------------------------------


def test_apply_changes_is_guarded_by_the_old_state(store: Store) -> None:
    run = seeded(store)
    with store.begin() as conn:
        extract, transform, load = (ti(conn, run, t) for t in ("extract", "transform", "load"))
        changed = task_instances.apply_changes(
            conn,
            [
                StateChange(extract.id, TIState.PENDING, TIState.SCHEDULED),
                StateChange(transform.id, TIState.PENDING, TIState.UPSTREAM_FAILED),
                StateChange(load.id, TIState.PENDING, TIState.SKIPPED),
            ],
            NOW,
        )
        assert changed == 3
        # a change planned from an older snapshot: extract is no longer PENDING
        stale = [StateChange(extract.id, TIState.PENDING, TIState.SKIPPED)]
        assert task_instances.apply_changes(conn, stale, NOW) == 0

    with store.read() as conn:
        extract, transform, load = (ti(conn, run, t) for t in ("extract", "transform", "load"))
    assert (extract.state, extract.end_date) == (TIState.SCHEDULED, None)
    assert (transform.state, transform.end_date) == (TIState.UPSTREAM_FAILED, NOW)
    assert (load.state, load.end_date) == (TIState.SKIPPED, NOW)


def test_apply_changes_refuses_a_transition_the_state_table_forbids(store: Store) -> None:
    run = seeded(store)
    with store.begin() as conn:
        extract = ti(conn, run, "extract")
        with pytest.raises(ValueError, match="pending -> success is not an allowed transition"):
            task_instances.apply_changes(
                conn, [StateChange(extract.id, TIState.PENDING, TIState.SUCCESS)], NOW
            )
        assert ti(conn, run, "extract").state == TIState.PENDING


# -- tries and fencing --------------------------------------------------------------------------


def test_create_tries_queues_the_task_instance_with_a_new_try_as_its_fence(store: Store) -> None:
    run = seeded(store)
    with store.begin() as conn:
        extract = schedule(conn, ti(conn, run, "extract"))
        new = queue(conn, extract, worker_id=17)

    assert (new.ti_id, new.dag_run_id, new.task_id, new.map_index) == (
        extract.id,
        run.id,
        "extract",
        -1,
    )
    assert (new.try_number, new.max_tries, new.log_path) == (1, 3, "extract.log")
    with store.read() as conn:
        row = ti(conn, run, "extract")
        attempt = try_row(conn, new.try_id)
    assert (row.state, row.try_number, row.current_try_id) == (TIState.QUEUED, 1, new.try_id)
    assert row.queued_at == NOW
    assert (attempt.state, attempt.try_number, attempt.task_instance_id) == (
        TryState.QUEUED,
        1,
        extract.id,
    )
    assert (attempt.worker_id, attempt.log_path, attempt.queued_at) == (17, "extract.log", NOW)


def test_create_tries_refuses_a_stale_row_and_writes_nothing(store: Store) -> None:
    """Two schedulers picked the same task instance: the claim is refused as a conflict.

    Schedulers lock the rows they read (SKIP LOCKED) so this cannot happen between them; if it
    does anyway, nothing may be half-written: the caller's transaction is rolled back.
    """
    run = seeded(store)
    with store.begin() as conn:
        extract = schedule(conn, ti(conn, run, "extract"))
        first = queue(conn, extract)
    with pytest.raises(ConflictError), store.begin() as conn:
        tries.create_tries(conn, [extract], log_paths=["x.log"], worker_id=None, now=NOW)
    with pytest.raises(ConflictError), store.begin() as conn:
        pending = ti(conn, run, "transform")
        tries.create_tries(conn, [pending], log_paths=["y.log"], worker_id=None, now=NOW)

    with store.read() as conn:
        assert ti(conn, run, "extract").current_try_id == first.try_id
        assert len(list(conn.execute(select(task_try)))) == 1


def test_a_started_try_that_succeeds_stores_its_result(store: Store) -> None:
    run = seeded(store)
    started_at = NOW + timedelta(seconds=1)
    with store.begin() as conn:
        new = queue(conn, schedule(conn, ti(conn, run, "extract")))
        assert tries.record_started(conn, TryStarted(new.try_id, "worker-1", 4242, started_at))
        running = ti(conn, run, "extract")
        assert (running.state, running.start_date) == (TIState.RUNNING, started_at)
        assert try_row(conn, new.try_id).state == TryState.RUNNING

        recorded = tries.record_outcome(
            conn, outcome(new.try_id, result='{"rows": 3}'), retry_delays=NO_DELAYS
        )

    assert recorded == tries.Recorded(
        ti_id=new.ti_id,
        dag_run_id=run.id,
        task_id="extract",
        state=TIState.SUCCESS,
        try_number=1,
        try_id=new.try_id,
        max_tries=3,
    )
    with store.read() as conn:
        row = ti(conn, run, "extract")
        attempt = try_row(conn, new.try_id)
        assert task_instances.results_of(conn, run.id, ["extract"]) == {"extract": {"rows": 3}}
    assert (row.state, row.result) == (TIState.SUCCESS, '{"rows": 3}')
    assert (row.start_date, row.end_date) == (started_at, NOW + timedelta(seconds=10))
    assert (attempt.state, attempt.exit_code, attempt.error) == (TryState.SUCCESS, 0, None)
    assert (attempt.hostname, attempt.pid) == ("worker-1", 4242)
    assert attempt.end_date == NOW + timedelta(seconds=10)


def test_an_outcome_without_a_start_event_is_still_recorded(store: Store) -> None:
    run = seeded(store)
    with store.begin() as conn:
        new = queue(conn, schedule(conn, ti(conn, run, "extract")))
        recorded = tries.record_outcome(
            conn, outcome(new.try_id, result="1"), retry_delays=NO_DELAYS
        )

    assert recorded is not None
    assert recorded.state == TIState.SUCCESS
    with store.read() as conn:
        row = ti(conn, run, "extract")
    assert (row.state, row.start_date) == (TIState.SUCCESS, NOW + timedelta(seconds=1))


def test_a_try_that_is_no_longer_current_can_record_nothing(store: Store) -> None:
    run = seeded(store)
    with store.begin() as conn:
        extract = schedule(conn, ti(conn, run, "extract"))
        old = queue(conn, extract)
        # a person cleared the task while try 1 was still queued; it was queued again
        conn.execute(
            update(task_instance)
            .where(task_instance.c.id == extract.id)
            .values(state=TIState.SCHEDULED)
        )
        current = queue(conn, ti(conn, run, "extract"))
        assert current.try_number == 2

    with store.begin() as conn:
        started = TryStarted(old.try_id, "old-worker", 1, NOW)
        assert tries.record_started(conn, started) is False
        refused = tries.record_outcome(
            conn, outcome(old.try_id, result='"stale"'), retry_delays=NO_DELAYS
        )
        assert refused is None

    with store.read() as conn:
        row = ti(conn, run, "extract")
        assert (row.state, row.current_try_id) == (TIState.QUEUED, current.try_id)
        assert (row.result, row.start_date, row.end_date) == (None, None, None)
        assert try_row(conn, old.try_id).state == TryState.QUEUED
        assert try_row(conn, old.try_id).hostname == ""
        assert try_row(conn, current.try_id).state == TryState.QUEUED

    with store.begin() as conn:  # the current try still can
        recorded = tries.record_outcome(
            conn, outcome(current.try_id, result='"fresh"'), retry_delays=NO_DELAYS
        )
        assert recorded is not None
        assert ti(conn, run, "extract").result == '"fresh"'


def test_a_second_outcome_for_the_same_try_is_refused(store: Store) -> None:
    run = seeded(store)
    with store.begin() as conn:
        new = queue(conn, schedule(conn, ti(conn, run, "extract")))
        assert tries.record_outcome(conn, outcome(new.try_id, result="1"), retry_delays=NO_DELAYS)

    with store.begin() as conn:
        again = outcome(new.try_id, succeeded=False, ended_at=NOW + timedelta(minutes=1))
        assert tries.record_outcome(conn, again, retry_delays=NO_DELAYS) is None
        redelivered = outcome(new.try_id, result="2")
        assert tries.record_outcome(conn, redelivered, retry_delays=NO_DELAYS) is None

    with store.read() as conn:
        row = ti(conn, run, "extract")
        attempt = try_row(conn, new.try_id)
    assert (row.state, row.result, row.end_date) == (
        TIState.SUCCESS,
        "1",
        NOW + timedelta(seconds=10),
    )
    assert (attempt.state, attempt.error) == (TryState.SUCCESS, None)


def test_a_failure_with_tries_left_waits_for_its_retry_delay(store: Store) -> None:
    run = seeded(store)
    ended_at = NOW + timedelta(seconds=10)
    with store.begin() as conn:
        new = queue(conn, schedule(conn, ti(conn, run, "extract")))
        failed = outcome(new.try_id, succeeded=False, ended_at=ended_at)
        subjects = tries.retry_subjects(conn, [failed])
        recorded = tries.record_outcome(conn, failed, retry_delays={new.try_id: 42.5})

    assert recorded is not None
    assert (recorded.state, recorded.try_number, recorded.max_tries) == (
        TIState.UP_FOR_RETRY,
        1,
        3,
    )
    assert subjects == [
        tries.RetrySubject(new.try_id, new.ti_id, "etl", run.bundle_version, "extract", 1)
    ]
    due = ended_at + timedelta(seconds=42.5)
    with store.read() as conn:
        row = ti(conn, run, "extract")
        attempt = try_row(conn, new.try_id)
        assert task_instances.next_retry_time(conn) == due
        assert task_instances.retries_due(conn, due - timedelta(microseconds=1)) == []
        assert [r.id for r in task_instances.retries_due(conn, due)] == [new.ti_id]
    assert (row.state, row.next_retry_at, row.end_date) == (TIState.UP_FOR_RETRY, due, ended_at)
    assert (attempt.state, attempt.exit_code) == (TryState.FAILED, 1)
    assert attempt.error == "ValueError: boom"

    with store.begin() as conn:  # the retry: scheduled again, then a second try
        second = queue(conn, schedule(conn, row, old=TIState.UP_FOR_RETRY))
        assert second.try_number == 2
        row = ti(conn, run, "extract")
    assert (row.state, row.current_try_id, row.next_retry_at) == (
        TIState.QUEUED,
        second.try_id,
        None,
    )


def test_a_failure_on_the_last_try_fails_the_task(store: Store) -> None:
    spec = dag(task("flaky", retries=1))
    run = seeded(store, spec)
    with store.begin() as conn:
        first = queue(conn, schedule(conn, ti(conn, run, "flaky")))
        one = tries.record_outcome(
            conn, outcome(first.try_id, succeeded=False), retry_delays={first.try_id: 0}
        )
        assert one is not None
        assert one.state == TIState.UP_FOR_RETRY
        second = queue(conn, schedule(conn, ti(conn, run, "flaky"), old=TIState.UP_FOR_RETRY))
        last = outcome(second.try_id, succeeded=False)
        assert tries.retry_subjects(conn, [last]) == []  # the last try: no delay needed
        two = tries.record_outcome(conn, last, retry_delays=NO_DELAYS)

    assert two is not None
    assert (two.state, two.try_number, two.max_tries) == (TIState.FAILED, 2, 2)
    with store.read() as conn:
        row = ti(conn, run, "flaky")
    assert (row.state, row.try_number, row.next_retry_at) == (TIState.FAILED, 2, None)


def test_a_failure_with_tries_left_but_no_delay_given_is_refused(store: Store) -> None:
    run = seeded(store)
    with store.begin() as conn:
        new = queue(conn, schedule(conn, ti(conn, run, "extract")))
        with pytest.raises(ValueError, match="no retry delay was given"):
            tries.record_outcome(conn, outcome(new.try_id, succeeded=False), retry_delays={})


def test_a_task_without_retries_fails_on_its_first_failure(store: Store) -> None:
    run = seeded(store)
    with store.begin() as conn:
        new = queue(conn, schedule(conn, ti(conn, run, "load")))
        recorded = tries.record_outcome(
            conn, outcome(new.try_id, succeeded=False), retry_delays=NO_DELAYS
        )

    assert recorded is not None
    assert recorded.state == TIState.FAILED


# -- mapping and results ------------------------------------------------------------------------

MAPPED = dag(
    task("numbers"),
    task(
        "square",
        "numbers",
        expand={"n": result_ref("numbers")},
        retries=1,
        pool="warehouse",
        pool_slots=2,
        priority=3,
        queue="heavy",
    ),
    task("total", "square"),
    dag_id="mapped",
)


def test_expand_replaces_the_placeholder_by_scheduled_task_instances(store: Store) -> None:
    run = seeded(store, MAPPED)
    later = NOW + timedelta(minutes=1)
    with store.begin() as conn:
        placeholder = ti(conn, run, "square")
        task_instances.expand(conn, placeholder.id, 3, later)
        task_instances.expand(conn, placeholder.id, 3, later)  # a second expansion does nothing

    with store.read() as conn:
        rows = [row for row in tis_of(conn, run) if row.task_id == "square"]
    assert [(row.map_index, row.state) for row in rows] == [
        (-1, TIState.REMOVED),
        (0, TIState.SCHEDULED),
        (1, TIState.SCHEDULED),
        (2, TIState.SCHEDULED),
    ]
    assert rows[0].end_date == later
    for row in rows[1:]:
        assert (row.max_tries, row.pool, row.pool_slots) == (2, "warehouse", 2)
        assert (row.priority, row.queue, row.try_number) == (3, "heavy", 0)


def test_expanding_to_nothing_skips_the_placeholder(store: Store) -> None:
    run = seeded(store, MAPPED)
    with store.begin() as conn:
        task_instances.expand(conn, ti(conn, run, "square").id, 0, NOW)

    with store.read() as conn:
        rows = [row for row in tis_of(conn, run) if row.task_id == "square"]
    assert [(row.map_index, row.state, row.end_date) for row in rows] == [
        (-1, TIState.SKIPPED, NOW)
    ]


def test_results_of_gives_a_mapped_task_the_list_of_its_results_in_map_index_order(
    store: Store,
) -> None:
    run = seeded(store, MAPPED)
    count = 12
    with store.begin() as conn:
        finish(conn, ti(conn, run, "numbers"), result="[0, 1, 2]")
        task_instances.expand(conn, ti(conn, run, "square").id, count, NOW)
        for index in reversed(range(count)):  # finishing order does not matter
            if index == 4:
                finish(conn, ti(conn, run, "square", index), ok=False)
            else:
                finish(conn, ti(conn, run, "square", index), result=str(index * index))

    with store.read() as conn:
        results = task_instances.results_of(conn, run.id, ["square", "numbers", "square"])
        assert task_instances.results_of(conn, run.id, ["total"]) == {"total": None}
        assert task_instances.results_of(conn, run.id, []) == {}
    expected = [i * i for i in range(count)]
    expected[4] = None  # a failed instance (up for retry) has no result, but keeps its place
    assert results == {"numbers": [0, 1, 2], "square": expected}


# -- slot accounting ----------------------------------------------------------------------------


def test_pool_usage_and_active_per_dag_count_queued_and_running_task_instances(
    store: Store,
) -> None:
    etl = dag(
        task("a"),
        task("b"),
        task("c", pool="warehouse", pool_slots=3),
        task("d"),
        task("e"),
    )
    web = dag(task("x", pool="warehouse", pool_slots=2), task("y"), dag_id="web")
    with store.read() as conn:
        assert task_instances.pool_usage(conn) == {}
        assert task_instances.active_per_dag(conn) == {}
    etl_run = seeded(store, etl)
    web_run = seeded(store, web)
    with store.begin() as conn:
        queue(conn, schedule(conn, ti(conn, etl_run, "a")))  # queued
        for task_id in ("b", "c"):  # running
            new = queue(conn, schedule(conn, ti(conn, etl_run, task_id)))
            tries.record_started(conn, TryStarted(new.try_id, "w", 1, NOW))
        schedule(conn, ti(conn, etl_run, "d"))  # scheduled: holds no slot yet
        queue(conn, schedule(conn, ti(conn, web_run, "x")))
        finish(conn, ti(conn, web_run, "y"))  # finished: gave its slot back

    with store.read() as conn:
        assert task_instances.pool_usage(conn) == {"default_pool": 2, "warehouse": 5}
        assert task_instances.active_per_dag(conn) == {"etl": 3, "web": 1}
        assert [row.task_id for row in task_instances.schedulable(conn, limit=10)] == ["d"]


# -- lost tries ---------------------------------------------------------------------------------


def test_unfinished_of_dead_workers_finds_the_tries_of_silent_or_stopped_workers(
    store: Store,
) -> None:
    spec = dag(task("a"), task("b"), task("c"), task("d"), task("e"))
    run = seeded(store, spec)
    with store.begin() as conn:

        def worker(hostname: str, heartbeat_at: datetime) -> int:
            return components.register(
                conn, kind="worker", hostname=hostname, pid=1, now=heartbeat_at
            )

        alive = worker("alive", NOW - timedelta(minutes=10))
        components.heartbeat(conn, alive, NOW)
        silent = worker("silent", NOW - timedelta(minutes=10))
        stopped = worker("stopped", NOW)
        components.mark_stopped(conn, stopped, NOW)

        queue(conn, schedule(conn, ti(conn, run, "a")), worker_id=alive)
        lost = queue(conn, schedule(conn, ti(conn, run, "b")), worker_id=silent)
        done = queue(conn, schedule(conn, ti(conn, run, "c")), worker_id=silent)
        assert tries.record_outcome(conn, outcome(done.try_id), retry_delays=NO_DELAYS)
        orphan = queue(conn, schedule(conn, ti(conn, run, "d")), worker_id=stopped)
        # a remote worker names itself only when it starts the try
        late = queue(conn, schedule(conn, ti(conn, run, "e")), worker_id=None)
        started = TryStarted(late.try_id, "silent", 7, NOW - timedelta(minutes=9))
        assert tries.record_started(conn, started, worker_id=silent)

    with store.read() as conn:
        found = try_liveness.unfinished_of_dead_workers(conn, NOW - timedelta(seconds=30))

    assert sorted((row.id, row.hostname) for row in found) == [
        (lost.try_id, "silent"),
        (orphan.try_id, "stopped"),
        (late.try_id, "silent"),
    ]
    by_id = {row.id: row for row in found}
    assert by_id[lost.try_id].queued_at == NOW
    assert by_id[late.try_id].start_date == NOW - timedelta(minutes=9)


# -- time ---------------------------------------------------------------------------------------


def test_every_datetime_read_back_is_aware_utc(store: Store) -> None:
    plus_two = timezone(timedelta(hours=2))
    logical_date = NOW.astimezone(plus_two)  # the same instant, written as +02:00
    with store.begin() as conn:
        add_dag(conn, ETL)
        run = new_run(conn, logical_date=logical_date)
        worker = components.register(conn, kind="worker", hostname="w", pid=1, now=NOW)
        new = queue(conn, schedule(conn, ti(conn, run, "extract")), worker_id=worker)
        tries.record_started(conn, TryStarted(new.try_id, "w", 1, NOW))
        tries.record_outcome(
            conn, outcome(new.try_id, succeeded=False), retry_delays={new.try_id: 5}
        )
        dags.set_next_run(
            conn,
            "etl",
            dags.NextRun(logical_date, logical_date, logical_date, logical_date),
            NOW,
        )

    assert run.logical_date == NOW
    checked = 0
    with store.read() as conn:
        for table in metadata.sorted_tables:
            columns = [c for c in table.columns if isinstance(c.type, UtcDateTime)]
            for row in conn.execute(select(*columns)) if columns else []:
                for column, value in zip(columns, row, strict=True):
                    if value is None:
                        continue
                    checked += 1
                    assert value.tzinfo is UTC, f"{table.name}.{column.name}: {value!r}"
        assert dags.get_dag(conn, "etl").next_logical_date == NOW
        assert ti(conn, run, "extract").next_retry_at == NOW + timedelta(seconds=15)
    assert checked >= 15


def test_a_naive_datetime_is_refused(store: Store) -> None:
    with store.begin() as conn:
        add_dag(conn, ETL)

    with pytest.raises(StatementError, match="naive datetime"), store.begin() as conn:
        new_run(conn, logical_date=NOW.replace(tzinfo=None), start=False)

    with store.read() as conn:
        assert runs.list_runs(conn) == []
