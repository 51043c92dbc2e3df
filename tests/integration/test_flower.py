"""Flower, started against the same broker, shows drayman's workers and their tries (issue 3).

A real Flower (`celery --broker=URL flower`) and a real `drayman worker` on a Redis database of
this file's own; a scheduler in this process sends the tries. What this holds in place (ADR 9):
the worker keeps heartbeats and remote control on, so Flower lists it, sees it alive, and turns
its task events on by remote control (they are off until somebody asks).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select as sql_select
from test_celery_wakeup import _wait_run
from throwaway import free_port

from drayman import run_creation
from drayman.config import Settings
from drayman.dag_processor.processor import DagProcessor
from drayman.executors.celery import CeleryExecutor, task_id_of
from drayman.scheduler.loop import Scheduler
from drayman.states import RunState
from drayman.store.engine import Store
from drayman.store.schema import dag_run, task_instance, task_try
from support.services import unreachable
from support.worker import start_worker

pytestmark = pytest.mark.slow

REDIS_DB = 14  # this file's own Redis database: flushed before and after
REDIS_URL = os.environ.get("DRAYMAN_TEST_FLOWER_REDIS_URL", f"redis://127.0.0.1:6379/{REDIS_DB}")
TASKS = 3
DAG = f"""
from drayman import DAG, task

with DAG("seen", schedule=None):
    for i in range({TASKS}):

        @task(task_id=f"t{{i}}")
        def noop():
            pass

        noop()
"""


@pytest.fixture
def flower_redis() -> Iterator[str]:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.flushdb()
    except Exception as exc:
        unreachable(f"Redis at {REDIS_URL}", exc)
    yield REDIS_URL
    client.flushdb()
    client.close()


class Flower:
    """A `celery flower` subprocess and its HTTP API."""

    def __init__(self, broker: str, workdir: Path) -> None:
        self.port = free_port()
        self.output = workdir / "flower.out"
        env = {**os.environ, "FLOWER_UNAUTHENTICATED_API": "true"}
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "celery", f"--broker={broker}", "flower"),
                    *(f"--port={self.port}", "--address=127.0.0.1"),
                    f"--db={workdir / 'flower.db'}",
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def get(self, path: str) -> Any:
        url = f"http://127.0.0.1:{self.port}{path}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())

    def wait_for(self, what: str, check: Any, timeout_s: float = 30.0) -> Any:
        """Poll until `check()` returns something truthy; fail naming `what`."""
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"Flower exited:\n{self.output.read_text(errors='replace')[-3000:]}")
            try:
                last = check()
            except OSError as exc:  # not listening yet
                last = exc
            if last and not isinstance(last, Exception):
                return last
            time.sleep(0.25)
        pytest.fail(f"Flower never showed {what} within {timeout_s:g} s; last answer: {last!r}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def test_flower_lists_the_worker_and_its_tries(
    database: str,
    flower_redis: str,
    tmp_path: Path,
) -> None:
    settings = Settings(
        home=tmp_path / "scheduler",
        dags_folder=tmp_path / "dags",
        database_url=database,
        executor="celery",
        broker_url=flower_redis,
        heartbeat_interval_s=1.0,
        parse_timeout_s=30,
    )
    settings.dags_folder.mkdir(parents=True)
    (settings.dags_folder / "seen.py").write_text(textwrap.dedent(DAG))
    store = Store(database)
    DagProcessor(settings, store).tick()
    worker = start_worker(database, flower_redis, tmp_path / "worker")
    nodename = f"drayman-{worker.process.pid}@"
    flower = Flower(flower_redis, tmp_path)
    scheduler = Scheduler(settings, store, CeleryExecutor(settings), executor_name="celery")
    scheduler.start()
    stop = threading.Event()
    loop = threading.Thread(target=scheduler.run, args=(stop,), daemon=True)
    loop.start()
    try:
        workers = flower.wait_for(
            "the worker in /api/workers",
            lambda: [n for n in flower.get("/api/workers?refresh=1") if n.startswith(nodename)],
        )
        (name,) = workers
        # alive: Flower hears the worker's heartbeats (without_heartbeat=False)
        flower.wait_for("the worker alive", lambda: flower.get("/api/workers?status=1").get(name))
        # Flower turns task events on by remote control every 5 s: a try run before that is
        # not seen, so run until one run's tries all show up
        seen: dict[str, Any] = {}
        shown: set[int] = set()
        for attempt in range(8):
            run_id = f"r{attempt}"
            with store.begin() as conn:
                run_creation.trigger(
                    conn, "seen", conf=None, triggered_by="test", now=store.now(), run_id=run_id
                )
            scheduler.mark_all_dirty()
            scheduler.wake()
            assert _wait_run(store, "seen", run_id, timeout_s=30) == RunState.SUCCESS
            wanted = set(_try_ids(store, "seen", run_id))
            tasks = flower.get(f"/api/tasks?workername={name}")
            # a message names one or two tries (ADR 11): its task id lists them
            seen = {
                tid: task
                for tid, task in tasks.items()
                if set(_ids_in(tid)) & wanted and set(_ids_in(tid)) <= wanted
            }
            shown = {try_id for tid in seen for try_id in _ids_in(tid)}
            # Flower learns a task's name from its task-received event: when events were turned
            # on between a message's receipt and its success, it knows the outcome but no name
            if shown == wanted and all(
                (t["name"], t["state"]) == ("drayman.run_tries", "SUCCESS") for t in seen.values()
            ):
                break
            time.sleep(1.0)
        assert shown == wanted, f"Flower lists {sorted(seen)} of {wanted}; log: {worker.log()}"
        for tid, task in seen.items():
            assert tid == task_id_of(_ids_in(tid))
            assert (task["name"], task["state"], task["worker"]) == (
                "drayman.run_tries",
                "SUCCESS",
                name,
            ), task
    finally:
        stop.set()
        scheduler.wake()
        loop.join(timeout=10)
        scheduler.stop(grace_s=1)
        flower.stop()
        worker.stop()
        store.dispose()


def _ids_in(task_id: str) -> list[int]:
    """The try ids a message's task id names ("drayman-tries-12-13"); none for others."""
    prefix = "drayman-tries-"
    return (
        [int(part) for part in task_id[len(prefix) :].split("-")]
        if task_id.startswith(prefix)
        else []
    )


def _try_ids(store: Store, dag_id: str, run_id: str) -> list[int]:
    with store.read() as conn:
        return list(
            conn.execute(
                sql_select(task_try.c.id)
                .join(task_instance, task_instance.c.id == task_try.c.task_instance_id)
                .join(dag_run, dag_run.c.id == task_instance.c.dag_run_id)
                .where(dag_run.c.dag_id == dag_id, dag_run.c.run_id == run_id)
            ).scalars()
        )
