"""The DAG callback fence: a finished run's callback is claimed once per finish.

A remote worker claims a callback in the store (`dispatch.claim_callback`) before it runs it,
so a replayed, duplicated or forged `run_callback` message runs nothing; a run reopened by a
clear is due its callback again when it finishes again. On SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Connection, select, update

from drayman.spec import DagSpec, TaskSpec
from drayman.states import RunState, TIState
from drayman.store import actions, dispatch, runs
from drayman.store.engine import Store
from drayman.store.schema import dag_run, task_instance

if TYPE_CHECKING:
    from support.seed import Seed

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
BUNDLE = "c" * 64
SPEC = DagSpec(
    dag_id="etl",
    fileloc="etl.py",
    schedule=None,
    tasks={"load": TaskSpec(task_id="load", kind="python")},
    callbacks=("on_success", "on_failure"),
)


def spec_of(dag_id: str, version: str) -> DagSpec:
    assert (dag_id, version) == ("etl", BUNDLE)
    return SPEC


def finished_run(seed: Seed, conn: Connection, state: RunState, conf: str | None = None) -> int:
    """A run of SPEC whose task ended in `state`, finished by the scheduler's own call."""
    seed.publish(conn, SPEC, bundle=BUNDLE, now=NOW, source="# etl\n")
    pk = seed.run(conn, SPEC, "r1", bundle=BUNDLE, now=NOW)
    ti_state = TIState.SUCCESS if state == RunState.SUCCESS else TIState.FAILED
    conn.execute(update(task_instance).values(state=ti_state))
    if conf is not None:  # written straight into the store, as an old database may hold it
        conn.execute(update(dag_run).where(dag_run.c.id == pk).values(conf=conf))
    assert runs.finish_run(conn, pk, state, NOW)
    return pk


def claim(store: Store, callback: str, at: datetime = NOW) -> dispatch.CallbackClaim:
    with store.begin() as conn:
        return dispatch.claim_callback(conn, "etl", "r1", callback, spec_of, now=at)


def test_a_callback_is_claimed_once_per_finish(seed: Seed, store: Store) -> None:
    with store.begin() as conn:
        finished_run(seed, conn, RunState.SUCCESS)
    first = claim(store, "on_success")
    assert first.workload is not None and first.workload.callback == "on_success"
    assert first.workload.run.run_id == "r1" and first.workload.reason == "success"
    again = claim(store, "on_success")
    assert (again.workload, again.refusal) == (None, "claimed already: it ran or runs elsewhere")
    with store.read() as conn:
        claimed = conn.execute(select(dag_run.c.callback_claimed_at)).scalar_one()
    assert claimed == NOW


def test_a_callback_that_is_not_due_is_refused_and_not_claimed(seed: Seed, store: Store) -> None:
    with store.begin() as conn:
        finished_run(seed, conn, RunState.SUCCESS)
    wrong = claim(store, "on_failure")
    assert (wrong.workload, wrong.refusal) == (None, "the run is success, not failed")
    with store.begin() as conn:
        missing = dispatch.claim_callback(conn, "etl", "nope", "on_success", spec_of, now=NOW)
        unknown = dispatch.claim_callback(conn, "etl", "r1", "on_retry", spec_of, now=NOW)
    assert missing.refusal == unknown.refusal == "no such run or callback"
    assert claim(store, "on_success").workload is not None  # the due one is still unclaimed


def test_a_cleared_run_is_due_its_callback_again_when_it_finishes_again(
    seed: Seed, store: Store
) -> None:
    with store.begin() as conn:
        pk = finished_run(seed, conn, RunState.FAILED)
    assert claim(store, "on_failure").workload is not None
    with store.begin() as conn:
        actions.clear_run(conn, "etl", "r1", now=NOW + timedelta(minutes=1), by="test")
        run = runs.get_run_by_id(conn, pk)
        assert (run.state, run.callback_claimed_at) == (RunState.RUNNING, None)
        conn.execute(update(task_instance).values(state=TIState.FAILED))
        assert runs.finish_run(conn, pk, RunState.FAILED, NOW + timedelta(minutes=2))
    assert claim(store, "on_failure").workload is not None
    assert claim(store, "on_failure").workload is None


def test_a_callback_whose_workload_cannot_be_built_is_refused_unclaimed(
    seed: Seed, store: Store
) -> None:
    with store.begin() as conn:
        finished_run(seed, conn, RunState.SUCCESS, conf='{"a": ' * 5000 + "1" + "}" * 5000)
    refused = claim(store, "on_success")
    assert refused.workload is None
    assert refused.refusal.startswith("cannot be dispatched: RecursionError"), refused.refusal
    with store.read() as conn:
        assert conn.execute(select(dag_run.c.callback_claimed_at)).scalar_one() is None
