"""With Celery, each queue's tries queued or running are capped, counted in the store: twice
the live workers' --concurrency serving it, and at least `celery_min_in_flight`.

Per queue: tries routed to a queue no worker serves wait in the broker up to the cap, and
never hold up the other queues. No worker process runs here; the scheduler only queues, and
a live worker is a component row with a fresh heartbeat, as a real one would write.
"""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from chaos_harness import Chaos, chaos_fixture, start_chaos
from sqlalchemy import func, select
from throwaway import Redis

from drayman.scheduler.capacity import LIVE_WORKERS_READ_S
from drayman.states import TIState
from drayman.store import components
from drayman.store.schema import task_instance

pytestmark = pytest.mark.slow

DAGS = {
    "two_queues.py": textwrap.dedent("""
        from drayman import DAG, task

        with DAG("two_queues", max_active_tasks=100):
            for i in range(12):
                @task(task_id=f"gpu_{i}", queue="gpu")
                def on_gpu() -> None: ...

                @task(task_id=f"cpu_{i}")
                def on_default() -> None: ...

                on_gpu()
                on_default()
    """),
}


chaos = chaos_fixture(DAGS, celery_min_in_flight=3)


def test_each_queue_is_capped_on_its_own(chaos: Chaos) -> None:
    chaos.trigger("two_queues", "r1")
    for _ in range(5):
        chaos.tick()

    assert queued_by_queue(chaos) == {"gpu": 3, "default": 3}, chaos.describe()


def queued_by_queue(chaos: Chaos) -> dict[str, int]:
    with chaos.store.read() as conn:
        return dict(
            conn.execute(
                select(task_instance.c.queue, func.count())
                .where(task_instance.c.state == TIState.QUEUED)
                .group_by(task_instance.c.queue)
            ).all()
        )


def register_worker(chaos: Chaos, queues: list[str], concurrency: int) -> None:
    """A live worker as `drayman worker` registers itself (no process: this test only queues)."""
    with chaos.store.begin() as conn:
        components.register(
            conn,
            kind="worker",
            hostname="big-host",
            pid=1,
            executor="celery",
            queues=queues,
            concurrency=concurrency,
            now=chaos.store.db_now(conn),
        )


def test_a_live_worker_raises_the_cap_of_the_queues_it_serves(chaos: Chaos) -> None:
    register_worker(chaos, ["default"], concurrency=4)
    chaos.trigger("two_queues", "r1")
    for _ in range(5):
        chaos.tick()
    # default: 2 x 4 slots of the live worker; gpu: nobody serves it, the floor of 3
    assert queued_by_queue(chaos) == {"gpu": 3, "default": 8}, chaos.describe()


def test_a_worker_that_starts_later_is_counted_before_the_next_heartbeat(
    chaos_database: str,
    throwaway_redis: Redis,
    tmp_path: Path,
) -> None:
    # Housekeeping (the heartbeat) is ten minutes away: only queueing's own read can see the
    # new worker. Before, its slots counted only from the next heartbeat on.
    chaos = start_chaos(
        chaos_database,
        throwaway_redis.url,
        tmp_path,
        DAGS,
        celery_min_in_flight=3,
        heartbeat_interval_s=600.0,
    )
    try:
        chaos.trigger("two_queues", "r1")
        start = chaos.store.now()
        chaos.scheduler.tick(start)
        assert queued_by_queue(chaos) == {"gpu": 3, "default": 3}, chaos.describe()

        register_worker(chaos, ["default", "gpu"], concurrency=3)
        chaos.scheduler.mark_all_dirty()
        chaos.scheduler.tick(start + timedelta(seconds=LIVE_WORKERS_READ_S))
        assert queued_by_queue(chaos) == {"gpu": 6, "default": 6}, chaos.describe()
    finally:
        chaos.close()
