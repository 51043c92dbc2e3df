"""A remote worker stops a try the store ended: cancelled (or cleared, marked) by a person.

Issue 4: "cancel a running try". The web and the CLI only change the store (ADR 4's fence);
the `drayman worker` running the try notices within a second and kills its process group
(ADR 12). On PostgreSQL and MariaDB, with a real worker subprocess on a throwaway Redis.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from chaos_harness import Chaos, alive, start_chaos
from throwaway import Redis

from drayman.states import RunState, TIState, TryState
from drayman.store import actions
from support.waiting import wait_until

pytestmark = pytest.mark.slow

DAGS = {
    "stuck.py": textwrap.dedent("""
        import os, time
        from pathlib import Path
        from drayman import DAG, task

        with DAG("stuck"):

            @task(retries=2)
            def hang(ctx) -> str:
                Path("@MARKERS@/pid").write_text(str(os.getpid()))
                time.sleep(120)
                return "never"

            hang()
    """),
}


@pytest.fixture
def chaos(
    chaos_database: str,
    throwaway_redis: Redis,
    tmp_path: Path,
) -> Iterator[Chaos]:
    markers = tmp_path / "markers"
    markers.mkdir()
    cluster = start_chaos(
        chaos_database, throwaway_redis.url, tmp_path, DAGS, {"MARKERS": str(markers)}
    )
    yield cluster
    cluster.close()


def test_a_worker_kills_a_cancelled_try_and_the_task_fails_without_retries(
    chaos: Chaos,
) -> None:
    worker = chaos.start_worker("w1", concurrency=2)
    chaos.trigger("stuck", "r1")
    pid_file = chaos.root / "markers" / "pid"
    chaos.drive(lambda conn: pid_file.exists(), 30, what="the try running")
    pid = int(pid_file.read_text())

    with chaos.store.begin() as conn:
        actions.cancel_task_instance(conn, "stuck", "r1", "hang", now=chaos.store.now(), by="ops")
    wait_until(lambda: not alive(pid), 15, "the worker to kill the cancelled try")

    chaos.drive(chaos.run_finished("stuck", "r1"), 30, what="the run finished")
    assert chaos.run_state("stuck", "r1") == RunState.FAILED
    (only,) = chaos.tries()["hang"]
    assert only.state == TryState.FAILED and "cancelled by ops" in only.error, chaos.describe()
    assert only.ti_state == TIState.FAILED, "a cancelled task must not be retried"
    assert worker.process.poll() is None, "the worker must survive a cancel"
