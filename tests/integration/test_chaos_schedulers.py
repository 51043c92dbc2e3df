"""Chaos: one of two schedulers is killed (kill -9) every 30 s for 3 minutes while runs flow.

Two `drayman scheduler` processes share each database: the surviving one carries on, and the
killed one is started again at once. A DAG scheduled every few seconds keeps runs coming, and
its tasks share a pool of two slots. At the end: no run was created twice (one run per logical
date, with no interval skipped), no try was created twice (one try per task instance, each
succeeded, each marker line written once), the pool never had more than two tries running at
once (their [start, end] intervals), and everything finished.

PostgreSQL and MariaDB run at the same time, each with its own throwaway server, Redis
database, schedulers and worker: the issue's 3 minutes once, not twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from chaos_cluster import Cluster, assert_each_task_ran_once, chaos_dag, cluster, runs_by_state
from chaos_servers import throwaway_database
from sqlalchemy import select
from throwaway import Redis

from drayman.states import RunState
from drayman.store import dags as dag_store
from drayman.store import pools
from drayman.store.schema import dag_run, task_instance, task_try

pytestmark = [pytest.mark.slow(seconds=190), pytest.mark.timeout(480)]  # started first

DAG_ID = "flow"
EVERY_S = 3
TASKS_PER_RUN = 4
POOL, POOL_SLOTS = "narrow", 2
CHAOS_S = 180
KILL_EVERY_S = 30
SETTINGS = {
    "heartbeat_interval_s": 1,
    "heartbeat_timeout_s": 4,
    "queued_timeout_s": 3,
    "scheduler_poll_s": 0.5,
    "remote_poll_s": 0.2,
    "worker_grace_s": 10,
}

DAG = """
with DAG("@DAG_ID@", schedule="interval:@EVERY@", start_date="@START@", catchup=True,
         max_active_runs=16, max_active_tasks=16):
    for name in ("a", "b", "c", "d"):

        @task(task_id=name, pool="@POOL@")
        def step(ctx) -> None:
            mark(ctx)
            time.sleep(0.3)

        step()
"""


def _dag_source(markers: Path, start: datetime) -> str:
    body = (
        DAG.replace("@EVERY@", str(EVERY_S))
        .replace("@START@", start.isoformat())
        .replace("@POOL@", POOL)
    )
    return chaos_dag(DAG_ID, markers, body)


@pytest.fixture
def clusters(throwaway_redis: Redis, tmp_path: Path) -> Iterator[list[Cluster]]:
    """One cluster per database, two schedulers and one worker each, on one Redis."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=2 * EVERY_S)
    with ExitStack() as stack:
        made = []
        for index, kind in enumerate(("postgresql", "mysql")):
            server = stack.enter_context(throwaway_database(kind))
            root = tmp_path / kind
            broker = throwaway_redis.url.rsplit("/", 1)[0] + f"/{index}"
            source = _dag_source(root / "markers.txt", start)
            c = stack.enter_context(
                cluster(root, server.url, broker, {"flow.py": source}, **SETTINGS)
            )
            with c.store.begin() as conn:
                pools.set_pool(conn, POOL, POOL_SLOTS)
            made.append(c)
        for c in made:
            c.add_scheduler()
            c.add_scheduler()
            c.add_worker(concurrency=4)
        yield made


def _pause(c: Cluster) -> None:
    with c.store.begin() as conn:
        dag_store.set_paused(conn, DAG_ID, True, c.store.now())


def _most_running_at_once(intervals: list[tuple[datetime, datetime]]) -> int:
    """The largest number of [start, end] intervals that overlap; touching ones do not."""
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    most = running = 0
    for _, step in edges:  # at a tie an end (-1) sorts before a start (+1)
        running += step
        most = max(most, running)
    return most


def _pool_intervals(c: Cluster) -> list[tuple[datetime, datetime]]:
    with c.store.read() as conn:
        rows = conn.execute(
            select(task_try.c.start_date, task_try.c.end_date)
            .join(task_instance, task_instance.c.id == task_try.c.task_instance_id)
            .where(task_instance.c.pool == POOL)
        ).all()
    assert all(s is not None and e is not None for s, e in rows), f"unfinished tries: {rows}"
    return [(s, e) for s, e in rows]


def _check_runs(c: Cluster, kind: str) -> list[Any]:
    with c.store.read() as conn:
        runs = conn.execute(
            select(dag_run.c.run_id, dag_run.c.logical_date, dag_run.c.state)
            .where(dag_run.c.dag_id == DAG_ID)
            .order_by(dag_run.c.logical_date)
        ).all()
    dates = [r.logical_date for r in runs]
    assert len(dates) == len(set(dates)), f"{kind}: a logical date has two runs: {dates}"
    gaps = [(a, b) for a, b in pairwise(dates) if b - a != timedelta(seconds=EVERY_S)]
    assert gaps == [], f"{kind}: intervals skipped between runs: {gaps}"
    assert {r.state for r in runs} == {RunState.SUCCESS}, f"{kind}: {runs_by_state(c.store)}"
    return runs


def test_killing_schedulers_creates_nothing_twice_and_keeps_pool_limits(
    clusters: list[Cluster],
) -> None:
    began = time.monotonic()
    kills = 0
    for round_ in range(CHAOS_S // KILL_EVERY_S):
        time.sleep(max(0.0, began + (round_ + 1) * KILL_EVERY_S - time.monotonic()))
        for c in clusters:
            dead = [p.name for p in c.processes if not p.alive()]
            assert dead == [], f"processes died by themselves: {dead}\n{c.describe()}"
            victim = c.schedulers[round_ % 2]
            victim.kill()
            victim.start("scheduler.started")
            kills += 1
    for c in clusters:
        _pause(c)
    time.sleep(1.0)  # a tick that began before the pause may still create one run
    runs = {}
    for kind, c in zip(("postgresql", "mysql"), clusters, strict=True):
        with c.store.read() as conn:
            created = conn.execute(select(dag_run.c.id).where(dag_run.c.dag_id == DAG_ID)).all()
        c.wait_finished(len(created), timeout=60)
        runs[kind] = _check_runs(c, kind)
        # 3 minutes of a run every EVERY_S seconds, less what a pause may cut short
        assert len(runs[kind]) >= CHAOS_S // EVERY_S - 2, f"{kind}: only {len(runs[kind])} runs"
        assert_each_task_ran_once(c, len(runs[kind]) * TASKS_PER_RUN)
        most = _most_running_at_once(_pool_intervals(c))
        assert most <= POOL_SLOTS, f"{kind}: {most} tries ran at once in a pool of {POOL_SLOTS}"
        assert most == POOL_SLOTS, f"{kind}: the pool was never full ({most}): no contention"
    assert kills == 2 * (CHAOS_S // KILL_EVERY_S)
