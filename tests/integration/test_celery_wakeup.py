"""The broker wake-up (ADR 9): a worker's bell rings, every scheduler's listener hears it.

On the machine's real Redis and RabbitMQ. Each test rings on an exchange of its own (a random
name), so tests running at once never hear each other; the end-to-end test runs a real
`drayman worker` (which rings on the default exchange) on a Redis database of its own. The
restart test kills a throwaway redis-server of its own, never the shared one.
"""

from __future__ import annotations

import itertools
import os
import select
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select as sql_select
from throwaway import Redis, free_port

from drayman import run_creation
from drayman.config import Settings
from drayman.dag_processor.processor import DagProcessor
from drayman.executors.celery import CeleryExecutor
from drayman.executors.celery_wakeup import OutcomeBell, OutcomeListener
from drayman.scheduler.loop import Scheduler, TickReport
from drayman.states import RUN_FINISHED, RunState
from drayman.store.engine import Store
from drayman.store.schema import dag_run, task_instance, task_try
from drayman.wakeup import SchedulerWaker
from drayman.workloads import RunsChanged
from support.services import AMQP_URL, unreachable
from support.worker import start_worker

REDIS_DB = 12  # this file's own Redis database: its worker rings on the default exchange
REDIS_URL = os.environ.get("DRAYMAN_TEST_WAKEUP_REDIS_URL", f"redis://127.0.0.1:6379/{REDIS_DB}")
RETURNS_WITHIN_S = 10.0  # a bound for a loaded machine, not a speed check
HEARD_WITHIN_S = 10.0  # the same: how fast a ring is heard is for bench/ to say


def _reachable(url: str) -> None:
    listener = OutcomeListener(Settings(broker_url=url), exchange=_exchange_name())
    listener.start()
    try:
        if not listener.wait_connected(5):
            unreachable(url.split("@")[-1], TimeoutError("no connection within 5 s"))
    finally:
        listener.close()


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest) -> str:
    url = REDIS_URL if request.param == "redis" else AMQP_URL
    _reachable(url)
    return url


def _exchange_name() -> str:
    return f"drayman.wakeup.test.{uuid.uuid4().hex[:10]}"


@pytest.fixture
def exchange() -> str:
    return _exchange_name()


def _listener(url: str, exchange: str, **kwargs: float) -> OutcomeListener:
    listener = OutcomeListener(Settings(broker_url=url), exchange=exchange, **kwargs)
    listener.start()
    assert listener.wait_connected(5), f"the listener never connected to {url}"
    assert listener.take() == RunsChanged(all_runs=True), "a (re)connect must say: re-plan all"
    return listener


def _wait_heard(listener: OutcomeListener, timeout_s: float = HEARD_WITHIN_S) -> RunsChanged:
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"the listener heard nothing within {timeout_s:g} s")
        select.select([listener.fileno()], [], [], left)
        heard = listener.take()
        if heard is not None:
            return heard


RINGER = """
import sys
from drayman.config import Settings
from drayman.executors.celery_wakeup import OutcomeBell

bell = OutcomeBell(Settings(broker_url=sys.argv[1]), exchange=sys.argv[2])
print("ready", flush=True)
for line in sys.stdin:
    bell.ring(int(line))
bell.close()
"""


@pytest.fixture
def ringer(broker: str, exchange: str) -> Iterator[subprocess.Popen[str]]:
    """Another process with a bell: it rings each run id written to its stdin."""
    process = subprocess.Popen(
        [sys.executable, "-c", RINGER, broker, exchange],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    yield process
    assert process.stdin is not None
    process.stdin.close()
    process.wait(timeout=10)
    process.stdout.close()


def test_a_ring_from_another_process_wakes_the_listener_with_its_run(
    broker: str, exchange: str, ringer: subprocess.Popen[str]
) -> None:
    """Each ring is heard as the run it names: a fallback poll would say "all runs"."""
    listener = _listener(broker, exchange)
    assert ringer.stdin is not None
    try:
        for run_id in range(1, 8):
            ringer.stdin.write(f"{run_id}\n")
            ringer.stdin.flush()
            heard = _wait_heard(listener)
            assert heard == RunsChanged(frozenset({run_id})), f"ring {run_id} came out as {heard}"
    finally:
        listener.close()


def test_two_listeners_both_hear_every_ring(broker: str, exchange: str) -> None:
    first, second = _listener(broker, exchange), _listener(broker, exchange)
    bell = OutcomeBell(Settings(broker_url=broker), exchange=exchange)
    try:
        for run_id in (3, 5):
            bell.ring(run_id)
            assert _wait_heard(first) == RunsChanged(frozenset({run_id})), "first listener"
            assert _wait_heard(second) == RunsChanged(frozenset({run_id})), "second listener"
        bell.ring()  # no run named: every run is re-planned
        assert _wait_heard(first) == _wait_heard(second) == RunsChanged(all_runs=True)
    finally:
        bell.close()
        first.close()
        second.close()


def test_a_burst_of_rings_leaves_as_a_few_messages(exchange: str) -> None:
    _reachable(REDIS_URL)
    listener = _listener(REDIS_URL, exchange)
    bell = OutcomeBell(Settings(broker_url=REDIS_URL), exchange=exchange)
    try:
        for run_id in range(500):
            bell.ring(run_id)
        heard: set[int] = set()
        while len(heard) < 500:
            heard |= _wait_heard(listener).run_ids
        assert heard == set(range(500))
        bell.close()  # its count is bumped after the publish returns
        assert bell.published <= 5 and listener.messages == bell.published, (
            f"500 rings left as {bell.published} messages"
        )
    finally:
        bell.close()
        listener.close()


def _returns(call: Callable[[], object], what: str) -> None:
    """`call()` returns (or raises) at all: run in a thread, given `RETURNS_WITHIN_S`. A call
    that waits for a broker that never answers would hang, which is what this catches."""
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(RETURNS_WITHIN_S)
    assert not thread.is_alive(), f"{what} is still waiting after {RETURNS_WITHIN_S:g} s"


@pytest.fixture
def silent_broker() -> Iterator[str]:
    """A Redis URL whose port accepts connections and never answers: a client that waits for
    the broker waits forever here, where a closed port would fail it at once."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"


def test_a_bell_without_a_broker_never_blocks_nor_raises(silent_broker: str) -> None:
    bell = OutcomeBell(Settings(broker_url=silent_broker))

    def ring_many() -> None:
        for run_id in range(1000):
            bell.ring(run_id)

    _returns(ring_many, "ring() on a broker that never answers")
    _returns(lambda: bell.close(timeout_s=1.0), "close(timeout_s=1) on a broker never answering")


def test_a_listener_without_a_broker_asks_for_a_poll_each_fallback_interval() -> None:
    listener = OutcomeListener(
        Settings(broker_url=f"redis://127.0.0.1:{free_port()}/0"), fallback_s=0.1
    )
    listener.start()
    try:
        for _ in range(4):  # again and again, not once
            assert _wait_heard(listener) == RunsChanged(all_runs=True)
        assert not listener.connected
    finally:
        listener.close()


@pytest.mark.slow
def test_bell_and_listener_survive_a_redis_restart(
    throwaway_redis: Redis,
    exchange: str,
) -> None:
    settings = Settings(broker_url=throwaway_redis.url)
    listener = _listener(throwaway_redis.url, exchange, fallback_s=0.2)
    bell = OutcomeBell(settings, exchange=exchange)
    try:
        bell.ring(1)
        assert _wait_heard(listener) == RunsChanged(frozenset({1}))
        throwaway_redis.kill()
        _returns(lambda: bell.ring(2), "ring() on a dead broker")  # kept, sent when it is back
        # while away, the listener asks for the fallback poll
        assert _wait_heard(listener, 5) == RunsChanged(all_runs=True)
        throwaway_redis.start()
        assert listener.wait_connected(10) or pytest.fail("the listener never reconnected")
        heard: set[int] = set()
        deadline = time.monotonic() + 10
        while 3 not in heard:
            bell.ring(3)
            heard |= _wait_heard(listener, max(0.1, deadline - time.monotonic())).run_ids
            time.sleep(0.1)
        assert 3 in heard, "the bell never rang again after the restart"
    finally:
        bell.close(timeout_s=1.0)
        listener.close()


CHAIN = 5
CHAIN_DAG = f"""
from drayman import DAG, task

with DAG("chain", schedule=None):

    @task
    def noop():
        pass

    previous = noop()
    for _ in range({CHAIN} - 1):
        current = noop()
        previous >> current
        previous = current
"""


@pytest.fixture
def wakeup_redis() -> Iterator[str]:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.flushdb()
    except Exception as exc:
        unreachable(f"Redis at {REDIS_URL}", exc)
    yield REDIS_URL
    client.flushdb()
    client.close()


@pytest.mark.slow
def test_a_chain_on_a_real_worker_hops_at_once_not_at_the_poll(
    database: str,
    wakeup_redis: str,
    tmp_path: Path,
) -> None:
    poll_s = 120.0  # without the wake-up, each hop would wait for this poll
    settings = Settings(
        home=tmp_path / "scheduler",
        dags_folder=tmp_path / "dags",
        database_url=database,
        executor="celery",
        broker_url=wakeup_redis,
        heartbeat_interval_s=1.0,
        heartbeat_timeout_s=30,
        scheduler_poll_s=poll_s,
        remote_poll_s=poll_s,
        parse_timeout_s=30,
    )
    settings.dags_folder.mkdir(parents=True)
    (settings.dags_folder / "chain.py").write_text(textwrap.dedent(CHAIN_DAG))
    store = Store(database)
    DagProcessor(settings, store).tick()
    worker = start_worker(database, wakeup_redis, tmp_path / "worker")
    scheduler = Scheduler(settings, store, CeleryExecutor(settings), executor_name="celery")
    scheduler.start()
    stop = threading.Event()
    loop = threading.Thread(target=scheduler.run, args=(stop,), daemon=True)
    try:
        with store.begin() as conn:
            run_creation.trigger(
                conn, "chain", conf=None, triggered_by="test", now=store.now(), run_id="hops"
            )
        loop.start()
        # well inside one poll: a run that finishes in time was woken at every hop
        state = _wait_run(store, "chain", "hops", timeout_s=poll_s / 2)
        assert state == RunState.SUCCESS, worker.log()[-3000:]
    finally:
        stop.set()
        scheduler.wake()
        loop.join(timeout=10)
        scheduler.stop(grace_s=1)
        worker.stop()
    hops = _hops(store, "chain", "hops")
    store.dispose()
    print(f"hops (ms): {[round(h * 1000, 1) for h in hops]}")  # shown with -s; speed: bench W2
    assert len(hops) == CHAIN - 1


@pytest.mark.slow
def test_a_trigger_from_another_host_wakes_the_scheduler_through_the_broker(
    database: str,
    wakeup_redis: str,
    tmp_path: Path,
) -> None:
    """What the CLI and the web do after a change (`SchedulerWaker`): with another DRAYMAN_HOME
    no doorbell of this host is reached, so only the broker's bell can wake the scheduler."""
    poll_s = 30.0
    settings = Settings(
        home=tmp_path / "scheduler",
        dags_folder=tmp_path / "dags",
        database_url=database,
        executor="celery",
        broker_url=wakeup_redis,
        scheduler_poll_s=poll_s,
        remote_poll_s=poll_s,
        parse_timeout_s=30,
    )
    settings.dags_folder.mkdir(parents=True)
    (settings.dags_folder / "chain.py").write_text(textwrap.dedent(CHAIN_DAG))
    store = Store(database)
    DagProcessor(settings, store).tick()
    scheduler = Scheduler(settings, store, CeleryExecutor(settings), executor_name="celery")
    scheduler.start()
    idle = _signal_when_idle(scheduler)
    stop = threading.Event()
    loop = threading.Thread(target=scheduler.run, args=(stop,), daemon=True)
    loop.start()
    try:
        # its first ticks are done: it sleeps until the poll, so only a ring can start the run
        assert idle.wait(60), "the scheduler never finished a tick"
        with store.begin() as conn:
            run_creation.trigger(
                conn, "chain", conf=None, triggered_by="test", now=store.now(), run_id="remote"
            )
        elsewhere = Settings(
            home=tmp_path / "another-host", executor="celery", broker_url=wakeup_redis
        )
        waker = SchedulerWaker(elsewhere)
        waker.wake()
        waker.close()
        state = _wait_state(store, "chain", "remote", {RunState.RUNNING}, timeout_s=poll_s / 2)
    finally:
        stop.set()
        scheduler.wake()
        loop.join(timeout=10)
        scheduler.stop(grace_s=1)
        store.dispose()
    assert state == RunState.RUNNING, f"the run is {state} after half the {poll_s:g} s poll"


def _signal_when_idle(scheduler: Scheduler) -> threading.Event:
    """An event set once a tick of `scheduler` made no progress: its loop then sleeps until
    the poll or a wake-up."""
    idle = threading.Event()
    tick = scheduler.tick

    def tick_and_tell(now: datetime | None = None) -> TickReport:
        report = tick(now)
        if not report.progressed:
            idle.set()
        return report

    scheduler.tick = tick_and_tell  # type: ignore[method-assign]
    return idle


def _wait_run(store: Store, dag_id: str, run_id: str, timeout_s: float) -> RunState | None:
    """The run's state once it has finished, or None after `timeout_s`."""
    state = _wait_state(store, dag_id, run_id, RUN_FINISHED, timeout_s)
    return state if state in RUN_FINISHED else None


def _wait_state(
    store: Store, dag_id: str, run_id: str, wanted: Collection[RunState], timeout_s: float
) -> RunState | None:
    """The run's state once it is one of `wanted`; its last state seen after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    state = None
    while time.monotonic() < deadline:
        with store.read() as conn:
            found = conn.execute(
                sql_select(dag_run.c.state).where(
                    dag_run.c.dag_id == dag_id, dag_run.c.run_id == run_id
                )
            ).scalar_one_or_none()
        state = None if found is None else RunState(found)
        if state in wanted:
            return state
        time.sleep(0.05)
    return state


def _hops(store: Store, dag_id: str, run_id: str) -> list[float]:
    """Seconds from each try's end to the next one's start, in chain order."""
    with store.read() as conn:
        tries = conn.execute(
            sql_select(task_try.c.start_date, task_try.c.end_date)
            .join(task_instance, task_instance.c.id == task_try.c.task_instance_id)
            .join(dag_run, dag_run.c.id == task_instance.c.dag_run_id)
            .where(dag_run.c.dag_id == dag_id, dag_run.c.run_id == run_id)
            .order_by(task_try.c.start_date)
        ).all()
    return [
        (later.start_date - earlier.end_date).total_seconds()
        for earlier, later in itertools.pairwise(tries)
    ]
