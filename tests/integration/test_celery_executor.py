"""The Celery executor end to end: a real `drayman worker` subprocess, a real broker, PostgreSQL.

The scheduler runs in this process with a `CeleryExecutor` and is driven tick by tick; the
worker is the real CLI, so the try ids travel through Redis (or RabbitMQ) and the worker
records starts and outcomes in the store itself. Redis and RabbitMQ are the machine's own:
a test skips when one is not reachable, and fails instead under CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, func, select, update

from drayman import run_creation
from drayman.config import Settings
from drayman.dag_processor.processor import DagProcessor
from drayman.executors.celery import RUN_CALLBACK, RUN_TRIES, RUN_TRY, CeleryExecutor, make_app
from drayman.scheduler.loop import Scheduler
from drayman.states import RUN_FINISHED, RunState, TryState
from drayman.store import logs as log_store
from drayman.store.engine import Store
from drayman.store.schema import component, dag_run, task_instance, task_try
from support.services import AMQP_URL, unreachable
from support.waiting import wait_until
from support.worker import CLI, Worker, start_worker

pytestmark = pytest.mark.slow

REDIS_DB = 11  # this file's own Redis database: flushed before and after
REDIS_URL = os.environ.get("DRAYMAN_TEST_REDIS_URL", f"redis://127.0.0.1:6379/{REDIS_DB}")

DAGS = {
    "etl.py": """
        import json, os
        from drayman import DAG, task

        MARKERS = "@MARKERS@"

        def done(ctx, reason):
            with open(os.path.join(MARKERS, f"{ctx.run_id}.on_success"), "w") as f:
                f.write(reason)

        with DAG("etl", on_success=done):

            @task
            def extract() -> list:
                return [1, 2, 3, 4]

            @task
            def transform(rows: list) -> dict:
                return {"count": len(rows), "total": sum(rows)}

            @task
            def load(summary: dict) -> str:
                assert summary == {"count": 4, "total": 10}, summary
                return f"loaded {summary['total']}"

            load(transform(extract()))
    """,
    "two.py": """
        from drayman import DAG, task

        def said(ctx, reason):
            print("on_failure:", reason)

        with DAG("two", on_failure=said):

            @task
            def first() -> str:
                return "first ran"

            @task
            def second() -> str:
                return "second ran"

            first()
            second()
    """,
    "routed.py": """
        from drayman import DAG, task

        with DAG("routed"):

            @task(queue="heavy")
            def crunch() -> str:
                return "crunched"

            crunch()
    """,
    "flaky.py": """
        from drayman import DAG, task

        with DAG("flaky"):

            @task(retries=1, retry_delay=0)
            def wobbly(ctx):
                if ctx.try_number == 1:
                    raise RuntimeError("the source was not ready")
                return "second time lucky"

            wobbly()
    """,
}


def _flush_redis() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.flushdb()
    finally:
        client.close()


def _purge_amqp() -> None:
    app = make_app(Settings(broker_url=AMQP_URL))
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
        app.control.purge()
    finally:
        app.close()


@dataclass
class Cluster:
    """A scheduler in this process, a worker subprocess, one database and one broker."""

    settings: Settings
    store: Store
    scheduler: Scheduler
    worker: Worker
    markers: Path

    def trigger(self, dag_id: str, run_id: str) -> None:
        with self.store.begin() as conn:
            run_creation.trigger(
                conn, dag_id, conf=None, triggered_by="test", now=self.store.now(), run_id=run_id
            )
        self.scheduler.mark_all_dirty()

    def drive(self, until: Callable[[Connection], bool], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.scheduler.tick()
            with self.store.read() as conn:
                if until(conn):
                    return
            if time.monotonic() > deadline:
                pytest.fail(
                    f"not done after {timeout:g} s; the worker said:\n{self.worker.log()[-3000:]}"
                )
            time.sleep(0.05)

    def drive_run(self, dag_id: str, run_id: str) -> Any:
        def finished(conn: Connection) -> bool:
            state = conn.execute(
                select(dag_run.c.state).where(
                    dag_run.c.dag_id == dag_id, dag_run.c.run_id == run_id
                )
            ).scalar_one_or_none()
            return state is not None and RunState(state) in RUN_FINISHED

        self.drive(finished)
        with self.store.read() as conn:
            return conn.execute(
                select(dag_run).where(dag_run.c.dag_id == dag_id, dag_run.c.run_id == run_id)
            ).one()

    def tries(self, dag_id: str, run_id: str) -> dict[str, list[Any]]:
        with self.store.read() as conn:
            rows = conn.execute(
                select(task_instance.c.task_id, task_try)
                .join(task_try, task_try.c.task_instance_id == task_instance.c.id)
                .join(dag_run, dag_run.c.id == task_instance.c.dag_run_id)
                .where(dag_run.c.dag_id == dag_id, dag_run.c.run_id == run_id)
                .order_by(task_try.c.id)
            ).all()
        found: dict[str, list[Any]] = {}
        for row in rows:
            found.setdefault(row.task_id, []).append(row)
        return found

    def worker_component(self) -> Any:
        with self.store.read() as conn:
            return conn.execute(
                select(component).where(
                    component.c.kind == "worker", component.c.pid == self.worker.process.pid
                )
            ).one()


def _cluster(
    database: str, broker: str, root: Path, *, queues: tuple[str, ...] = ()
) -> Iterator[Cluster]:
    markers = root / "markers"
    markers.mkdir(parents=True)
    settings = Settings(
        home=root / "scheduler",
        dags_folder=root / "dags",
        database_url=database,
        executor="celery",
        broker_url=broker,
        heartbeat_interval_s=0.5,
        heartbeat_timeout_s=10,
        scheduler_poll_s=1.0,
        remote_poll_s=0.05,
        parse_timeout_s=20,
    )
    for name, source in DAGS.items():
        path = settings.dags_folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).lstrip().replace("@MARKERS@", str(markers)))
    store = Store(database)
    processor = DagProcessor(settings, store)
    processor.tick()  # publishes this folder's bundle (a no-op if it is already the newest)
    worker = start_worker(database, broker, root / "worker", *queues)
    scheduler = Scheduler(settings, store, CeleryExecutor(settings), executor_name="celery")
    scheduler.start()
    try:
        yield Cluster(settings, store, scheduler, worker, markers)
    finally:
        scheduler.stop(grace_s=1)
        worker.stop()
        store.dispose()


@pytest.fixture(scope="module")
def redis_cluster(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    try:
        _flush_redis()
    except Exception as exc:
        unreachable(f"Redis at {REDIS_URL}", exc)
    try:
        yield from _cluster(database, REDIS_URL, tmp_path_factory.mktemp("celery-redis"))
    finally:
        _flush_redis()


def test_a_chain_runs_on_the_worker_and_passes_results(redis_cluster: Cluster) -> None:
    c = redis_cluster
    c.trigger("etl", "r1")
    run = c.drive_run("etl", "r1")
    assert run.state == RunState.SUCCESS
    worker = c.worker_component()
    assert (worker.executor, json.loads(worker.queues), worker.concurrency) == (
        "celery",
        ["default"],
        2,
    )
    tries = c.tries("etl", "r1")
    assert sorted(tries) == ["extract", "load", "transform"]
    for task_id, (only,) in tries.items():
        assert only.state == TryState.SUCCESS, (task_id, only.error)
        assert only.worker_id == worker.id
        assert only.hostname == socket.gethostname()
        assert only.pid is not None and only.pid not in (os.getpid(), c.worker.process.pid)
        assert only.queued_at <= only.start_date <= only.end_date
        # the worker wrote the log under its own home: it fetched the bundle from the store
        local_log = Path(c.worker.env["DRAYMAN_HOME"]) / "logs" / only.log_path
        assert local_log.is_file()
        # ...and shipped it: the store holds the same text, readable from any host
        with c.store.read() as conn:
            shipped = "".join(text for _, text in log_store.read_chunks(conn, only.id))
        assert shipped == local_log.read_text(), task_id
        assert f"{task_id}" in shipped and "[drayman] success" in shipped
    assert tries["extract"][0].end_date <= tries["transform"][0].start_date
    assert tries["transform"][0].end_date <= tries["load"][0].start_date
    with c.store.read() as conn:
        results = dict(
            conn.execute(
                select(task_instance.c.task_id, task_instance.c.result).where(
                    task_instance.c.dag_run_id == run.id
                )
            ).all()
        )
    assert json.loads(results["load"]) == "loaded 10"
    # the DAG's on_success callback ran on the worker, from ids alone
    wait_until(
        (c.markers / "r1.on_success").exists,
        10,
        "the on_success callback's marker",
        last=lambda: c.worker.log()[-3000:],
    )
    assert (c.markers / "r1.on_success").read_text() == "success"


def test_a_task_that_fails_once_is_retried_on_the_worker(redis_cluster: Cluster) -> None:
    c = redis_cluster
    c.trigger("flaky", "r1")
    assert c.drive_run("flaky", "r1").state == RunState.SUCCESS
    first, second = c.tries("flaky", "r1")["wobbly"]
    assert (first.state, first.error) == (TryState.FAILED, "RuntimeError: the source was not ready")
    assert second.state == TryState.SUCCESS
    assert first.worker_id == second.worker_id == c.worker_component().id


def _snapshot(store: Store) -> list[Any]:
    with store.read() as conn:
        return [
            conn.execute(select(table).order_by(table.c.id)).all()
            for table in (dag_run, task_instance, task_try)
        ]


def test_forged_messages_run_nothing_and_change_nothing(redis_cluster: Cluster) -> None:
    c = redis_cluster
    c.trigger("flaky", "forged")
    assert c.drive_run("flaky", "forged").state == RunState.SUCCESS
    with c.store.read() as conn:
        finished = conn.execute(select(func.max(task_try.c.id))).scalar_one()
    before = _snapshot(c.store)
    app = make_app(c.settings)
    try:
        for forged in (finished, 10_000_000, "1; DROP TABLE task_try", {"try_id": 1}):
            app.send_task(RUN_TRY, args=[forged], queue="default")
        for many in ([finished, 20_000_000], [True], [], list(range(65)), "[1]"):
            app.send_task(RUN_TRIES, args=[many], queue="default")
    finally:
        app.close()
    c.worker.wait_for_line(f"try.fenced try_id={finished}")
    c.worker.wait_for_line("try.fenced try_id=10000000")
    c.worker.wait_for_line("try.refused {'try_id': 1}")
    c.worker.wait_for_line("try.fenced try_id=20000000")
    c.worker.wait_for_line("try.refused [True]")
    c.worker.wait_for_line("try.refused []")
    c.worker.wait_for_line("try.refused '[1]'")
    assert _snapshot(c.store) == before


# Forged messages, each with the text its refusal logs. Nothing here may run a try or a
# callback, raise in the worker, be retried, or log more than a bounded line.
HUGE = 1_500_000  # characters: a log line this long is what the refusals must never write
FORGED: list[tuple[str, list[Any], dict[str, Any], str]] = [
    (RUN_TRIES, [[2**31]], {}, "try.refused [2147483648]"),  # past PostgreSQL's INTEGER
    (RUN_TRIES, [[2**63]], {}, "try.refused [9223372036854775808]"),
    (RUN_TRIES, [[10**30]], {}, "try.refused [1000000000000000000000000000000]"),
    (RUN_TRIES, [[0]], {}, "try.refused [0]"),
    (RUN_TRIES, [[-7]], {}, "try.refused [-7]"),
    (RUN_TRIES, [[1.0]], {}, "try.refused [1.0]"),
    (RUN_TRIES, [[None]], {}, "try.refused [None]"),
    (RUN_TRIES, [[[3]]], {}, "try.refused [[3]]"),
    (RUN_TRIES, [[4], [5]], {}, "try.refused {'args': ([4], [5]), 'kwargs': {}}"),
    (RUN_TRIES, [], {"try_ids": [6], "x": 1}, "try.refused {'args': (), 'kwargs':"),
    (RUN_TRIES, [], {}, "try.refused {'args': (), 'kwargs': {}}"),
    (RUN_TRIES, [list(range(1, 200_001))], {}, "try.refused [1, 2, 3,"),  # 1.3 MB of JSON
    (RUN_TRIES, ["9" * HUGE], {}, "try.refused '999"),
    (RUN_TRY, [2**31], {}, "try.refused 2147483648"),
    (RUN_TRY, [1.5], {}, "try.refused 1.5"),
    (RUN_TRY, [None], {}, "try.refused None"),
    (RUN_TRY, ["8"], {}, "try.refused '8'"),
    (RUN_TRY, [[9]], {}, "try.refused [9]"),
    (RUN_TRY, [False], {}, "try.refused False"),
    (RUN_CALLBACK, [1, 2, 3], {}, "callback.refused {'args': (1, 2, 3)"),
    (RUN_CALLBACK, ["etl", "r1"], {}, "callback.refused {'args': ('etl', 'r1')"),
    (RUN_CALLBACK, ["etl", "x" * HUGE, "on_success"], {}, "callback.refused {'args': ('etl', 'xxx"),
    (RUN_CALLBACK, [], {"dag_id": "etl"}, "callback.refused {'args': (), 'kwargs': {'dag_id'"),
]
LONGEST_LINE = 1100  # Celery's own lines cut a message body they cannot decode at 1,024


def _forge(c: Cluster) -> None:
    app = make_app(c.settings)
    try:
        for name, args, kwargs, _ in FORGED:
            app.send_task(name, args=args, kwargs=kwargs, queue="default")
    finally:
        app.close()


def _publish_raw(c: Cluster, body: str) -> None:
    """A `run_tries` message whose JSON body is `body` as is (send_task would encode it)."""
    app = make_app(c.settings)
    try:
        message = app.amqp.as_task_v2(uuid.uuid4().hex, RUN_TRIES, args=[[1]])
        with app.producer_or_acquire() as producer:
            producer.publish(
                body,
                exchange="",
                routing_key="default",
                content_type="application/json",
                content_encoding="utf-8",
                headers=message.headers,
                **message.properties,
            )
    finally:
        app.close()


def _assert_all_refused_once(c: Cluster, before: list[Any]) -> None:
    """Each forged message was refused and logged once in a bounded line; nothing changed."""
    for _, _, _, refusal in FORGED:
        c.worker.wait_for_line(refusal)
    log = c.worker.log()
    lines = log.splitlines()
    assert sum(".refused" in line for line in lines) == len(FORGED), log[-5000:]
    assert max(len(line) for line in lines) <= LONGEST_LINE
    assert "Traceback" not in log and "sent_again" not in log, log[-5000:]
    assert _snapshot(c.store) == before


def test_malformed_messages_are_refused_in_bounded_lines_and_dropped(
    redis_cluster: Cluster,
) -> None:
    c = redis_cluster
    c.trigger("two", "forged-before")  # no callback left to run after it: nothing moves
    assert c.drive_run("two", "forged-before").state == RunState.SUCCESS
    before = _snapshot(c.store)
    refused_before = c.worker.log().count(".refused")
    _forge(c)
    _publish_raw(c, "[[" + "[" * 100_000 + "]" * 100_000 + "], {}, {}]")  # too deep to decode
    for _, _, _, refusal in FORGED:
        c.worker.wait_for_line(refusal)
    c.worker.wait_for_line("Can't decode message body")  # Celery's own refusal: cut at 1 KB
    assert c.worker.log().count(".refused") - refused_before == len(FORGED)
    assert max(len(line) for line in c.worker.log().splitlines()) <= LONGEST_LINE
    assert _snapshot(c.store) == before
    # acknowledged, not requeued: nothing waits in the queue or unacknowledged in Redis
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        wait_until(
            lambda: not (client.llen("default") or client.hlen("unacked")),
            10,
            "every refused message to leave the broker",
        )
    finally:
        client.close()
    assert "sent_again" not in c.worker.log()


def test_a_worker_refuses_a_try_of_a_queue_it_does_not_serve(
    redis_cluster: Cluster, tmp_path: Path
) -> None:
    """A message naming a try of queue `heavy` arrives on `default` (forged or misrouted):
    the `default` worker leaves it QUEUED, and a worker of `heavy` runs it from the
    scheduler's own message."""
    c = redis_cluster
    c.trigger("routed", "r1")
    c.drive(lambda conn: _queued_tries(conn, "routed") == 1)
    ((only,),) = c.tries("routed", "r1").values()
    app = make_app(c.settings)
    try:
        app.send_task(RUN_TRIES, args=[[only.id]], queue="default")
    finally:
        app.close()
    c.worker.wait_for_line(f"try.refused try_id={only.id} queue=heavy: this worker serves default")
    ((still,),) = c.tries("routed", "r1").values()
    assert (still.state, still.start_date, still.worker_id) == (TryState.QUEUED, None, None)
    heavy = start_worker(c.settings.database_url, REDIS_URL, tmp_path / "heavy", "heavy")
    try:
        assert c.drive_run("routed", "r1").state == RunState.SUCCESS
        ((ran,),) = c.tries("routed", "r1").values()
        assert ran.id == only.id and ran.state == TryState.SUCCESS
        assert ran.pid is not None and heavy.log().count("task.started") == 1
    finally:
        assert heavy.stop() == 0


def test_a_replayed_or_forged_callback_runs_nothing(redis_cluster: Cluster) -> None:
    """The scheduler's run_callback ran `on_success` once; the same message again, or one for
    a callback that is not due, runs nothing: the worker claims a finish's callback in the
    store before it runs it (`dag_run.callback_claimed_at`)."""
    c = redis_cluster
    c.trigger("etl", "cb")
    assert c.drive_run("etl", "cb").state == RunState.SUCCESS
    marker = c.markers / "cb.on_success"
    wait_until(
        marker.exists, 10, "the on_success callback's marker", last=lambda: c.worker.log()[-3000:]
    )
    with c.store.read() as conn:
        claimed = conn.execute(
            select(dag_run.c.callback_claimed_at).where(dag_run.c.run_id == "cb")
        ).scalar_one()
    assert claimed is not None
    marker.unlink()
    app = make_app(c.settings)
    try:
        app.send_task(RUN_CALLBACK, args=["etl", "cb", "on_success"], queue="default")
        app.send_task(RUN_CALLBACK, args=["etl", "cb", "on_failure"], queue="default")
        app.send_task(RUN_CALLBACK, args=["etl", "nope", "on_success"], queue="default")
    finally:
        app.close()
    c.worker.wait_for_line("callback.refused dag=etl run=cb callback=on_success: claimed already")
    c.worker.wait_for_line("callback.refused dag=etl run=cb callback=on_failure: the run is")
    c.worker.wait_for_line("callback.refused dag=etl run=nope callback=on_success: no such run")
    assert not marker.exists()


def test_workers_list_shows_the_worker(redis_cluster: Cluster) -> None:
    c = redis_cluster
    listed = subprocess.run(
        [*CLI, "workers", "list", "--json"],
        env=c.worker.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    (mine,) = [w for w in json.loads(listed.stdout) if w["pid"] == c.worker.process.pid]
    assert mine["hostname"] == socket.gethostname()
    assert (mine["executor"], mine["queues"], mine["concurrency"]) == ("celery", ["default"], 2)
    assert mine["state"] == "running" and mine["running"] == 0
    assert 0 <= mine["heartbeat_age_s"] < 5


@contextmanager
def _rabbitmq_cluster(
    database: str, root: Path, *, queues: tuple[str, ...] = ()
) -> Iterator[Cluster]:
    """A cluster on RabbitMQ, its queues purged before and after (RabbitMQ keeps what a
    test left behind across runs, unlike the flushed Redis database)."""
    try:
        _purge_amqp()
    except Exception as exc:
        unreachable(f"RabbitMQ at {AMQP_URL}", exc)
    clusters = _cluster(database, AMQP_URL, root, queues=queues)
    c = next(clusters)
    try:
        yield c
    finally:
        for _ in clusters:  # runs the generator's cleanup
            pass
        _purge_amqp()


def test_on_rabbitmq_a_run_succeeds_and_sigterm_stops_the_worker(
    database: str, tmp_path: Path
) -> None:
    with _rabbitmq_cluster(database, tmp_path, queues=("default", "heavy")) as c:
        c.trigger("etl", "amqp")
        assert c.drive_run("etl", "amqp").state == RunState.SUCCESS
        assert {t.state for ts in c.tries("etl", "amqp").values() for t in ts} == {TryState.SUCCESS}
        assert c.worker.stop() == 0
        worker = c.worker_component()
        assert worker.state == "stopped" and worker.stopped_at is not None
        assert json.loads(worker.queues) == ["default", "heavy"]


def test_on_rabbitmq_malformed_messages_are_refused_and_acknowledged(
    database: str, tmp_path: Path
) -> None:
    with _rabbitmq_cluster(database, tmp_path) as c:
        before = _snapshot(c.store)
        _forge(c)
        _assert_all_refused_once(c, before)
        # RabbitMQ puts back what a closing consumer left unacknowledged: none may be left
        assert c.worker.stop() == 0
        assert _amqp_waiting("default") == 0


def _amqp_waiting(queue: str) -> int:
    app = make_app(Settings(broker_url=AMQP_URL))
    try:
        with app.connection_for_write() as conn:
            _, waiting, _ = conn.default_channel.queue_declare(queue, passive=True)
        return int(waiting)
    finally:
        app.close()


def test_the_scheduler_registers_no_local_worker_with_celery(redis_cluster: Cluster) -> None:
    with redis_cluster.store.read() as conn:
        scheduler = conn.execute(
            select(component).where(component.c.id == redis_cluster.scheduler.scheduler_id)
        ).one()
    assert scheduler.executor == "celery"
    assert redis_cluster.scheduler.worker_id is None


# -- tries that cannot be dispatched -----------------------------------------------------------


def _set_conf(store: Store, dag_id: str, run_id: str, raw: str) -> None:
    """Write a run's conf straight into the store, bypassing every entry point's checks."""
    with store.begin() as conn:
        conn.execute(
            update(dag_run)
            .where(dag_run.c.dag_id == dag_id, dag_run.c.run_id == run_id)
            .values(conf=raw)
        )


def _assert_failed_alone(c: Cluster, bad: str, good: str, reason: str) -> None:
    """Both runs end; the good one ran, each try of the bad one failed with `reason` in its
    error and in its log shipped to the store; the worker still runs tries afterwards."""
    assert c.drive_run("two", good).state == RunState.SUCCESS
    assert c.drive_run("two", bad).state == RunState.FAILED
    for task_id, (only,) in c.tries("two", bad).items():
        assert only.state == TryState.FAILED, task_id
        assert "cannot be dispatched" in only.error and reason in only.error, only.error
        with c.store.read() as conn:
            shipped = "".join(text for _, text in log_store.read_chunks(conn, only.id))
        assert f"not run: cannot be dispatched: {reason}" in shipped, shipped
    after = f"{bad}-after"
    c.trigger("two", after)
    assert c.drive_run("two", after).state == RunState.SUCCESS, c.worker.log()[-3000:]
    assert c.worker.process.poll() is None


def test_a_conf_too_deep_to_hand_to_a_warm_process_fails_only_its_tries(
    redis_cluster: Cluster,
) -> None:
    """900 levels parse, so the scheduler sends the ids; the worker rebuilds the workload but
    cannot pickle it to its warm process (this killed the worker's engine thread)."""
    c = redis_cluster
    c.trigger("two", "deep")
    c.trigger("two", "fine")
    _set_conf(c.store, "two", "deep", '{"a": ' * 900 + "1" + "}" * 900)
    _assert_failed_alone(c, "deep", "fine", "RecursionError")
    # its on_failure callback is claimed, then cannot be pickled either: logged, not run
    c.worker.wait_for_line(
        "callback.not_run dag=two run=deep callback=on_failure: cannot be dispatched"
    )


def test_a_try_whose_workload_the_worker_cannot_rebuild_fails_alone(
    redis_cluster: Cluster,
) -> None:
    """The conf breaks after the scheduler sent the tries and before the worker claims them
    (the worker is stopped with SIGSTOP meanwhile): the claim fails them, and them only."""
    c = redis_cluster
    os.kill(c.worker.process.pid, signal.SIGSTOP)
    try:
        c.trigger("two", "broken")
        c.trigger("two", "whole")
        c.drive(lambda conn: _queued_tries(conn, "two") == 4)
        _set_conf(c.store, "two", "broken", '{"a": ')
    finally:
        os.kill(c.worker.process.pid, signal.SIGCONT)
    _assert_failed_alone(c, "broken", "whole", "JSONDecodeError")


def _queued_tries(conn: Connection, dag_id: str) -> int:
    return conn.execute(
        select(func.count())
        .select_from(task_try)
        .join(task_instance, task_instance.c.id == task_try.c.task_instance_id)
        .join(dag_run, dag_run.c.id == task_instance.c.dag_run_id)
        .where(dag_run.c.dag_id == dag_id, task_try.c.state == TryState.QUEUED)
    ).scalar_one()


# -- a worker whose engine dies -------------------------------------------------------------


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid`, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it exited meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_a_worker_whose_engine_dies_exits_non_zero(database: str, tmp_path: Path) -> None:
    """The engine thread meets a fault it cannot survive: a tmp cleaner removed the socket of
    the worker's forkserver, then the OOM killer took a warm process, so the engine cannot
    start its replacement. The worker must exit non-zero (systemd restarts it), not go on
    heartbeating while nothing can run its tries."""
    try:
        _flush_redis()
    except Exception as exc:
        unreachable(f"Redis at {REDIS_URL}", exc)
    # the worker's TMPDIR, where multiprocessing puts its sockets: short, since a socket path
    # may hold 107 bytes and pytest's tmp_path under xdist comes close to that alone
    tmp = Path(tempfile.mkdtemp(prefix="dw-", dir="/tmp"))
    worker = start_worker(database, REDIS_URL, tmp_path / "worker", env={"TMPDIR": str(tmp)})
    try:
        (socket_file,) = tmp.glob("pymp-*/listener-*")
        (forkserver,) = [p for p in _children(worker.process.pid) if "forkserver" in _cmdline(p)]
        warm = _children(forkserver)
        assert len(warm) == 2, warm  # --concurrency 2: two warm processes wait
        socket_file.unlink()
        os.kill(warm[0], signal.SIGKILL)
        try:
            code = worker.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker runs on without its engine; its output:\n{worker.log()}")
        assert code == 1, worker.log()  # ENGINE_DIED_EXIT
        assert "worker.engine_died" in worker.log() and "FileNotFoundError" in worker.log()
        store = Store(database)
        try:
            with store.read() as conn:
                state = conn.execute(
                    select(component.c.state).where(component.c.pid == worker.process.pid)
                ).scalar_one()
        finally:
            store.dispose()
        assert state == "stopped"  # its tries, if any, are retried at once
    finally:
        worker.stop()
        _flush_redis()
        shutil.rmtree(tmp, ignore_errors=True)
