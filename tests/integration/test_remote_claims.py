"""A remote worker's claim (`store.remote_claims.claim_tries`) on SQLite, PostgreSQL and MariaDB.

What the Celery tests show end to end on PostgreSQL, here on every database: a try of a queue
the worker does not serve stays QUEUED and untouched, and a try whose workload cannot be
rebuilt fails alone, with the reason in its log in the store, in the claim's transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection, select, update

from drayman.spec import DagSpec, TaskSpec
from drayman.states import RunState, StateChange, TIState, TryState
from drayman.store import logs as log_store
from drayman.store import task_instances, tries
from drayman.store.engine import Store
from drayman.store.remote_claims import claim_tries
from drayman.store.schema import dag_run, task_instance, task_try

if TYPE_CHECKING:
    from support.seed import Seed

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
BUNDLE = "d" * 64
SPEC = DagSpec(
    dag_id="etl",
    fileloc="etl.py",
    schedule=None,
    tasks={
        "light": TaskSpec(task_id="light", kind="python"),
        "heavy": TaskSpec(task_id="heavy", kind="python", queue="heavy"),
    },
)


def spec_of(dag_id: str, version: str) -> DagSpec:
    assert (dag_id, version) == ("etl", BUNDLE)
    return SPEC


def queued_tries(seed: Seed, conn: Connection, run_id: str) -> dict[str, int]:
    """A started run of SPEC whose two tasks each have a QUEUED try; try ids by task."""
    pk = seed.run(conn, SPEC, run_id, bundle=BUNDLE, now=NOW)
    rows = conn.execute(select(task_instance).where(task_instance.c.dag_run_id == pk)).all()
    changes = [StateChange(r.id, TIState.PENDING, TIState.SCHEDULED) for r in rows]
    task_instances.apply_changes(conn, changes, NOW)
    rows = conn.execute(select(task_instance).where(task_instance.c.dag_run_id == pk)).all()
    paths = [f"etl/{run_id}/{r.task_id}.log" for r in rows]
    new = tries.create_tries(conn, rows, log_paths=paths, worker_id=None, now=NOW)
    return {t.task_id: t.try_id for t in new}


def seeded(seed: Seed, store: Store, *run_ids: str) -> dict[str, dict[str, int]]:
    with store.begin() as conn:
        seed.publish(conn, SPEC, bundle=BUNDLE, now=NOW, source="# etl\n")
        return {run_id: queued_tries(seed, conn, run_id) for run_id in run_ids}


def try_row(store: Store, try_id: int) -> tuple[str, str | None, int | None]:
    with store.read() as conn:
        row = conn.execute(select(task_try).where(task_try.c.id == try_id)).one()
    return row.state, row.error, row.worker_id


def test_a_try_of_a_queue_the_worker_does_not_serve_stays_queued(seed: Seed, store: Store) -> None:
    ids = seeded(seed, store, "r1")["r1"]
    with store.begin() as conn:
        claimed = claim_tries(
            conn,
            list(ids.values()),
            spec_of,
            worker_id=7,
            now=NOW,
            hostname="test-host",
            pid=1,
            queues={"default"},
        )
    assert [w.task_id for w in claimed.workloads] == ["light"]
    assert [r.try_id for r in claimed.refused] == [ids["heavy"]] and claimed.failed == ()
    assert try_row(store, ids["light"]) == (TryState.RUNNING, None, 7)
    assert try_row(store, ids["heavy"]) == (TryState.QUEUED, None, None)
    with store.begin() as conn:  # a worker of its queue takes it
        claimed = claim_tries(
            conn,
            [ids["heavy"]],
            spec_of,
            worker_id=8,
            now=NOW,
            hostname="test-host",
            pid=1,
            queues={"heavy"},
        )
    assert [w.task_id for w in claimed.workloads] == ["heavy"]
    assert try_row(store, ids["heavy"]) == (TryState.RUNNING, None, 8)


def test_a_try_whose_workload_cannot_be_rebuilt_fails_alone_in_the_claim(
    seed: Seed, store: Store
) -> None:
    ids = seeded(seed, store, "broken", "whole")
    with store.begin() as conn:
        conn.execute(update(dag_run).where(dag_run.c.run_id == "broken").values(conf='{"a": '))
    wanted = [*ids["broken"].values(), *ids["whole"].values()]
    with store.begin() as conn:
        claimed = claim_tries(
            conn, wanted, spec_of, worker_id=7, now=NOW, hostname="test-host", pid=1
        )
    assert sorted(w.try_id for w in claimed.workloads) == sorted(ids["whole"].values())
    assert sorted(r.try_id for r in claimed.failed) == sorted(ids["broken"].values())
    for try_id in ids["broken"].values():
        state, error, _ = try_row(store, try_id)
        assert state == TryState.FAILED
        assert error is not None and error.startswith("cannot be dispatched: JSONDecodeError")
        with store.read() as conn:
            ((seq, text),) = log_store.read_chunks(conn, try_id)
        assert seq == 0 and text == f"[drayman] not run: {error}\n"
    with store.read() as conn:
        states = conn.execute(
            select(task_instance.c.state)
            .join(dag_run, dag_run.c.id == task_instance.c.dag_run_id)
            .where(dag_run.c.run_id == "broken")
        ).scalars()
        assert set(states) == {TIState.FAILED}  # no retries left: the run can finish
        run = conn.execute(select(dag_run.c.state).where(dag_run.c.run_id == "broken"))
        assert run.scalar_one() == RunState.RUNNING
