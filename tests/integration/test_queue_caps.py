"""With Celery, `parallelism` caps each queue's tries queued or running, counted in the store.

Per queue: tries routed to a queue no worker serves wait in the broker up to the cap, and
never hold up the other queues. No worker runs here; the scheduler only queues.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from chaos_harness import Chaos, start_chaos
from sqlalchemy import func, select
from throwaway import Redis, chaos_database, throwaway_redis  # noqa: F401

from drayman.states import TIState
from drayman.store.schema import task_instance

pytestmark = pytest.mark.slow

DAGS = {
    "two_queues.py": textwrap.dedent("""
        from drayman import DAG, task

        with DAG("two_queues", max_active_tasks=100):
            for i in range(5):
                @task(task_id=f"gpu_{i}", queue="gpu")
                def on_gpu() -> None: ...

                @task(task_id=f"cpu_{i}")
                def on_default() -> None: ...

                on_gpu()
                on_default()
    """),
}


@pytest.fixture
def chaos(
    chaos_database: str,  # noqa: F811
    throwaway_redis: Redis,  # noqa: F811
    tmp_path: Path,
) -> Iterator[Chaos]:
    cluster = start_chaos(chaos_database, throwaway_redis.url, tmp_path, DAGS, parallelism=3)
    yield cluster
    cluster.close()


def test_each_queue_is_capped_on_its_own(chaos: Chaos) -> None:
    chaos.trigger("two_queues", "r1")
    for _ in range(5):
        chaos.tick()

    with chaos.store.read() as conn:
        queued = dict(
            conn.execute(
                select(task_instance.c.queue, func.count())
                .where(task_instance.c.state == TIState.QUEUED)
                .group_by(task_instance.c.queue)
            ).all()
        )
    assert queued == {"gpu": 3, "default": 3}, chaos.describe()
