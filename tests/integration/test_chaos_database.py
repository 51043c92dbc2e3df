"""Chaos: the database restarts under load, and nobody notices but the logs.

A real `drayman scheduler` and two `drayman worker` processes run 20 runs of a three-task chain
on this test's own PostgreSQL or MariaDB server. While tries are running and queued, the server
shuts down (every connection is cut), stays down a few seconds, and starts again on the same
port and data directory. Scheduler and workers reconnect by themselves: every run succeeds,
every task ran exactly once (its marker line is written once), and no try failed.

The server stays down for less than the heartbeat timeout: a database away longer than that
makes every worker look dead, and their tries are retried (issue 3's test 1 covers that).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from chaos_cluster import Cluster, assert_each_task_ran_once, chaos_dag, cluster
from chaos_servers import DatabaseServer, throwaway_database
from sqlalchemy import func, select
from throwaway import Redis

from drayman.states import TryState
from drayman.store.schema import task_try

pytestmark = pytest.mark.slow

RUNS = 20
TASKS_PER_RUN = 3
DOWN_S = 3.0
SETTINGS = {
    "heartbeat_interval_s": 1,
    "heartbeat_timeout_s": 10,  # longer than the server is down (DOWN_S and its restart)
    "queued_timeout_s": 4,
    "scheduler_poll_s": 0.5,
    "remote_poll_s": 0.2,
    "worker_grace_s": 10,
}

DAG = """
with DAG("@DAG_ID@", max_active_runs=32, max_active_tasks=64):

    @task
    def extract(ctx) -> int:
        mark(ctx)
        time.sleep(0.6)
        return 1

    @task
    def transform(ctx, value: int) -> int:
        mark(ctx)
        time.sleep(0.6)
        return value + 1

    @task
    def load(ctx, value: int) -> None:
        mark(ctx)
        time.sleep(0.6)

    load(transform(extract()))
"""


@pytest.fixture(params=["postgresql", "mysql"])
def database_server(request: pytest.FixtureRequest) -> Iterator[DatabaseServer]:
    with throwaway_database(request.param) as server:
        yield server


def _tries_in(c: Cluster, state: TryState) -> int:
    with c.store.read() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(task_try).where(task_try.c.state == state)
            ).scalar_one()
        )


def test_database_restart_under_load_loses_and_doubles_nothing(
    database_server: DatabaseServer,
    throwaway_redis: Redis,
    tmp_path: Path,
) -> None:
    source = chaos_dag("restart", tmp_path / "markers.txt", DAG)
    with cluster(
        tmp_path, database_server.url, throwaway_redis.url, {"restart.py": source}, **SETTINGS
    ) as c:
        c.add_scheduler()
        c.add_worker(concurrency=4)
        c.add_worker(concurrency=4)
        for index in range(RUNS):
            c.trigger("restart", f"load_{index:02d}")

        # under load: tries running on both workers, others queued behind them
        deadline = time.monotonic() + 30
        while _tries_in(c, TryState.RUNNING) < 4 or _tries_in(c, TryState.SUCCESS) < 4:
            assert time.monotonic() < deadline, f"the load never built up\n{c.describe()}"
            time.sleep(0.1)
        in_flight = RUNS - c.finished_runs()
        c.store.dispose()  # this process's connections die with the server, too
        database_server.restart(DOWN_S)
        assert in_flight > RUNS // 2, f"only {in_flight} runs were in flight at the restart"

        c.wait_finished(RUNS, timeout=60)
        dead = [p.name for p in c.processes if not p.alive()]
        assert dead == [], f"processes died with the database: {dead}\n{c.describe()}"
        assert_each_task_ran_once(c, RUNS * TASKS_PER_RUN)
