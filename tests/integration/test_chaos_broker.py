"""Chaos: the broker loses every queued message, and the scheduler sends them again.

The database is the truth, the broker only transport. 500 tries are queued and sent with no
worker listening; the broker is killed (SIGKILL) and started again empty, so every message is
gone (RabbitMQ's durable queues too: it comes back on a fresh data dir, as a replaced machine
would). The scheduler finds the tries still QUEUED and unclaimed after `queued_timeout_s` and
sends them again; a real `drayman worker` then runs each exactly once.

It runs on Redis with PostgreSQL and on RabbitMQ with MariaDB. The broker is this test's
own server on free ports (`throwaway`), never the machine's; the database is a throwaway one
on the machine's server.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Protocol

import pytest
from chaos_harness import Chaos, start_chaos
from sqlalchemy import Connection, func, select

from drayman.executors.celery import TRIES_PER_MESSAGE
from drayman.states import RunState, TIState, TryState
from drayman.store.schema import task_instance, task_try

pytestmark = pytest.mark.slow

TASKS = 500
DAG_ID = "many"
RUN_ID = "chaos"
QUEUED_TIMEOUT_S = 2.0

DAG_SOURCE = f"""
from drayman import DAG, task

with DAG("{DAG_ID}", max_active_tasks={TASKS}):
    for i in range({TASKS}):

        @task(task_id=f"noop_{{i:03d}}")
        def noop() -> None:
            return None

        noop()
"""


class Broker(Protocol):
    url: str

    def start(self) -> None: ...
    def kill(self) -> None: ...


def _waiting_messages(broker_url: str) -> int:
    """Messages in the broker's `default` queue, ready for a consumer."""
    from kombu import Connection as BrokerConnection

    with BrokerConnection(broker_url, connect_timeout=3) as conn:
        channel = conn.channel()
        try:
            return int(channel.queue_declare("default", passive=True).message_count)
        except conn.channel_errors:  # RabbitMQ: no such queue (404), so nothing in it
            return 0
        finally:
            channel.close()


def _queued_tries(conn: Connection) -> int:
    return conn.execute(
        select(func.count())
        .select_from(task_try)
        .join(task_instance, task_instance.c.current_try_id == task_try.c.id)
        .where(task_try.c.state == TryState.QUEUED, task_instance.c.state == TIState.QUEUED)
    ).scalar_one()


def _succeeded(conn: Connection) -> int:
    return conn.execute(
        select(func.count())
        .select_from(task_instance)
        .where(task_instance.c.state == TIState.SUCCESS)
    ).scalar_one()


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest) -> Broker:
    name = "throwaway_redis" if request.param == "redis" else "throwaway_rabbitmq"
    server: Broker = request.getfixturevalue(name)
    return server


# Each broker and each database once: what the broker loses does not depend on the database,
# and the resend query is the same for either broker.
@pytest.mark.parametrize(
    ("chaos_database", "broker"),
    [("postgresql", "redis"), ("mariadb", "rabbitmq")],
    indirect=True,
)
def test_broker_killed_with_tries_queued_all_run_once(
    chaos_database: str,
    broker: Broker,
    tmp_path: Path,
) -> None:
    c = start_chaos(
        chaos_database,
        broker.url,
        tmp_path,
        {"many.py": DAG_SOURCE},
        celery_min_in_flight=TASKS,  # the cap on tries in flight: all 500 are queued at once
        default_pool_slots=2 * TASKS,
        queued_timeout_s=QUEUED_TIMEOUT_S,
        heartbeat_timeout_s=10,
        remote_poll_s=0.2,
    )
    try:
        _lose_every_message(c, broker)
        # a worker arrives; the scheduler finds the lost tries and sends them again
        worker = c.start_worker("worker", concurrency=4)
        took = c.drive(
            c.run_finished(DAG_ID, RUN_ID), 120, what=f"all {TASKS} tries run after the loss"
        )
        assert c.run_state(DAG_ID, RUN_ID) == RunState.SUCCESS, worker.log()[-3000:]
        print(f"\n[chaos 4] {TASKS} tries run {took:.1f} s after the worker was ready")
        _assert_each_ran_once(c)
    finally:
        c.close()


def _lose_every_message(c: Chaos, broker: Broker) -> None:
    """Queue every try with no worker, then kill the broker and start it again empty."""
    c.trigger(DAG_ID, RUN_ID)
    c.drive(lambda conn: _queued_tries(conn) == TASKS, 60, what=f"all {TASKS} tries queued")
    assert c.failed_ticks == []
    # every try is in the broker, up to TRIES_PER_MESSAGE to a message
    assert _waiting_messages(broker.url) >= math.ceil(TASKS / TRIES_PER_MESSAGE)
    broker.kill()
    time.sleep(QUEUED_TIMEOUT_S + 0.5)  # every try is now unclaimed for longer than that
    c.tick()  # housekeeping resends them into a dead broker: the tick fails, the loop lives
    assert c.failed_ticks, "a tick sent to a dead broker and did not fail"
    assert "cannot send to the broker" in c.failed_ticks[0], c.failed_ticks
    broker.start()
    assert _waiting_messages(broker.url) == 0, "the broker came back with messages"


def _assert_each_ran_once(c: Chaos) -> None:
    """Each task instance succeeded with one try: none lost, none run twice."""
    tries = c.tries()
    assert len(tries) == TASKS
    assert {
        task_id: [t.state for t in rows]
        for task_id, rows in tries.items()
        if [(t.ti_state, t.state) for t in rows] != [(TIState.SUCCESS, TryState.SUCCESS)]
    } == {}
    with c.store.read() as conn:
        assert _succeeded(conn) == TASKS
