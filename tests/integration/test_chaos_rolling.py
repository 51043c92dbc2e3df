"""Chaos: a rolling restart of every worker and every scheduler while 30 DAG runs are in flight.

Two `drayman worker` and two `drayman scheduler` processes share one database and one Redis.
With 30 runs of a three-task chain under way, each process in turn gets SIGTERM, must exit 0
(a worker finishes its running tries within `worker_grace_s`, a scheduler its tick), and is
started again before the next one goes. At the end: every run succeeded, every task ran
exactly once, and no try failed, was lost or was made twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from chaos_cluster import (
    SCHEDULER_READY,
    WORKER_READY,
    assert_each_task_ran_once,
    chaos_dag,
    cluster,
)
from chaos_servers import DatabaseServer, throwaway_database
from throwaway import Redis

pytestmark = pytest.mark.slow

RUNS = 30
TASKS_PER_RUN = 3
GRACE_S = 20
SETTINGS = {
    "heartbeat_interval_s": 1,
    "heartbeat_timeout_s": 5,
    "queued_timeout_s": 4,
    "scheduler_poll_s": 0.5,
    "remote_poll_s": 0.2,
    "worker_grace_s": GRACE_S,  # far longer than a task: SIGTERM lets every try finish
}

DAG = """
with DAG("@DAG_ID@", max_active_runs=RUNS, max_active_tasks=64):

    @task
    def extract(ctx) -> int:
        mark(ctx)
        time.sleep(1.5)
        return 1

    @task
    def transform(ctx, value: int) -> int:
        mark(ctx)
        time.sleep(1.5)
        return value + 1

    @task
    def load(ctx, value: int) -> None:
        mark(ctx)
        time.sleep(1.5)

    load(transform(extract()))
""".replace("RUNS", str(RUNS))


@pytest.fixture(params=["postgresql", "mysql"])
def database_server(request: pytest.FixtureRequest) -> Iterator[DatabaseServer]:
    with throwaway_database(request.param) as server:
        yield server


def test_rolling_restart_fails_loses_and_doubles_nothing(
    database_server: DatabaseServer,
    throwaway_redis: Redis,
    tmp_path: Path,
) -> None:
    source = chaos_dag("rolling", tmp_path / "markers.txt", DAG)
    with cluster(
        tmp_path, database_server.url, throwaway_redis.url, {"rolling.py": source}, **SETTINGS
    ) as c:
        for _ in range(2):
            c.add_scheduler()
            c.add_worker(concurrency=4)
        for index in range(RUNS):
            c.trigger("rolling", f"roll_{index:02d}")

        for process in [*c.workers, *c.schedulers]:
            in_flight = RUNS - c.finished_runs()
            assert in_flight > 0, (
                f"every run finished before {process.name}'s turn: too little load"
            )
            code = process.terminate(timeout=GRACE_S + 15)
            assert code == 0, f"{process.name} exited {code} on SIGTERM:\n{process.tail()}"
            process.start(WORKER_READY if process in c.workers else SCHEDULER_READY)

        c.wait_finished(RUNS, timeout=90)
        assert_each_task_ran_once(c, RUNS * TASKS_PER_RUN)
        dead = [p.name for p in c.processes if not p.alive()]
        assert dead == [], f"processes died by themselves: {dead}\n{c.describe()}"
