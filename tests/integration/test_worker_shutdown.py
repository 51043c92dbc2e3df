"""SIGTERM to a worker: it takes no new try, lets running ones finish, hands back the rest.

Issue 3: "it takes no new task, finishes the tries it is running (up to a configurable grace
period, after which they are handed back and retried), and exits 0". On PostgreSQL and
MariaDB, with real `drayman worker` subprocesses on a throwaway Redis and the scheduler
ticking in this process.
"""

from __future__ import annotations

import signal
import textwrap
import time

import pytest
from chaos_harness import Chaos, chaos_fixture
from sqlalchemy import select

from drayman.states import RunState, TIState, TryState
from drayman.store.schema import task_instance

pytestmark = pytest.mark.slow

DAGS = {
    "shutdown.py": textwrap.dedent("""
        import os, time
        from drayman import DAG, task

        with DAG("short_one"):

            @task
            def short(ctx) -> str:
                time.sleep(2)
                return "finished during the grace"

            short()

        with DAG("long_one"):

            # no retries: a try handed back must not use one up
            @task(retries=0)
            def long(ctx) -> str:
                if ctx.try_number == 1:
                    time.sleep(120)
                return f"try {ctx.try_number}"

            long()
    """),
}


chaos = chaos_fixture(DAGS)


def _sigterm_when_running(chaos: Chaos, worker_index: int, dag_id: str) -> None:
    chaos.trigger(dag_id, "r1")

    def running(conn: object) -> bool:
        return any(t.state == TryState.RUNNING for ts in chaos.tries().values() for t in ts)

    chaos.drive(running, 30, what=f"{dag_id}'s try running")
    chaos.workers[worker_index].process.send_signal(signal.SIGTERM)


def test_a_running_try_finishes_within_the_grace_and_the_worker_exits_0(chaos: Chaos) -> None:
    worker = chaos.start_worker("w1", concurrency=2, DRAYMAN_WORKER_GRACE_S="30")
    _sigterm_when_running(chaos, 0, "short_one")

    code = worker.process.wait(timeout=30)

    assert code == 0, worker.log()
    (tries,) = chaos.tries().values()
    assert [t.state for t in tries] == [TryState.SUCCESS], chaos.describe()


def test_past_the_grace_a_try_is_handed_back_and_retried_without_using_a_retry(
    chaos: Chaos,
) -> None:
    worker = chaos.start_worker("w1", concurrency=2, DRAYMAN_WORKER_GRACE_S="1")
    _sigterm_when_running(chaos, 0, "long_one")
    stopped_at = time.monotonic()

    code = worker.process.wait(timeout=30)

    assert code == 0, worker.log()
    assert time.monotonic() - stopped_at < 15, "the grace of 1 s was not honoured"
    assert "worker.hand_back" in worker.log()
    chaos.start_worker("w2", concurrency=2)
    chaos.drive(chaos.run_finished("long_one", "r1"), 60, what="long_one's run finished")
    assert chaos.run_state("long_one", "r1") == RunState.SUCCESS, chaos.describe()
    (tries,) = chaos.tries().values()
    assert [t.state for t in tries] == [TryState.FAILED, TryState.SUCCESS], chaos.describe()
    assert (tries[0].error or "").startswith("handed back"), chaos.describe()
    with chaos.store.read() as conn:
        ti = conn.execute(select(task_instance)).one()
    # retries=0: one try allowed, plus the one handed back
    assert (ti.state, ti.try_number, ti.max_tries) == (TIState.SUCCESS, 2, 2)
