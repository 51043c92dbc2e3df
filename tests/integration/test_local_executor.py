"""The local executor with real worker processes: throughput, lost workers, cancel, stop."""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from drayman.bundles.archive import pack
from drayman.config import Settings
from drayman.exceptions import ExecutorError
from drayman.executors.base import Executor
from drayman.executors.local import LocalExecutor
from drayman.store.bundles import save_bundle
from drayman.store.engine import Store
from drayman.workloads import (
    CallbackWorkload,
)
from support.executor import VERSION, Events, outcomes, started, workload

DAG_FILE = """
import time
from drayman import DAG, task

def said(ctx, reason):
    print("dag callback:", reason)

with DAG("ex", on_failure=said):

    @task
    def noop():
        return 1

    noop()

    @task
    def sleep(ctx):
        time.sleep(ctx.params.get("seconds", 60))
        return "slept"

    sleep()

    @task
    def pool():
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(2) as workers:
            return sum(workers.map(abs, [-1, -2, 3]))

    pool()
"""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # The bundle is already in the worker's cache, so no worker ever needs the database.
    bundle = tmp_path / "home" / "bundles" / VERSION
    bundle.mkdir(parents=True)
    (bundle / "dag.py").write_text(DAG_FILE)
    return Settings(home=tmp_path / "home", parallelism=4, worker_idle_s=0.2)


@pytest.fixture
def executor(settings: Settings) -> Iterator[LocalExecutor]:
    executor = LocalExecutor(settings)
    executor.start()
    yield executor
    executor.stop(grace_s=0)


def test_it_is_an_executor(settings: Settings) -> None:
    executor: Executor = LocalExecutor(settings)
    assert executor.fileno() is None


def test_fifty_tries_all_succeed_in_order(executor: LocalExecutor) -> None:
    seen = Events(executor)
    assert executor.open_slots() == 4
    executor.submit([workload(i) for i in range(50)])
    assert executor.open_slots() == 0  # queued work counts: the scheduler must not over-submit
    events = seen.until(lambda ev: len(outcomes(ev)) == 50)
    assert all(o.succeeded and o.result_json == "1" for o in outcomes(events).values())
    position = {id(e): i for i, e in enumerate(events)}
    for try_id, outcome in outcomes(events).items():
        assert position[id(started(events)[try_id])] < position[id(outcome)]
    assert len({o.pid for o in outcomes(events).values()}) == 50  # one fork per try
    seen.until(lambda _: executor.open_slots() == 4, timeout_s=2)


def test_a_slot_frees_when_its_outcome_is_handed_out_not_before(settings: Settings) -> None:
    """Until the scheduler has taken a try's outcome (`events()`) and recorded it, the store
    still counts that try queued or running. Were its slot open before, the scheduler could
    queue another in the same tick: more than `parallelism` tries queued or running in the
    store, and a test that checks it fails whenever the worker finishes mid-tick."""
    executor = LocalExecutor(replace(settings, parallelism=1))
    executor.start()
    try:
        fd = executor.fileno()
        assert fd is not None
        executor.submit([workload(1)])
        deadline = time.monotonic() + 10
        while executor.running_try_ids():  # what a tick's heartbeat() does: pump, no events()
            assert time.monotonic() < deadline, "the try did not finish"
            select.select([fd], [], [], 0.5)
            executor.heartbeat()
        assert executor.open_slots() == 0, "a slot opened before its outcome was handed out"
        assert list(outcomes(executor.events())) == [1]
        assert executor.open_slots() == 1
    finally:
        executor.stop(grace_s=0)


def test_a_worker_killed_mid_try_is_reported_and_replaced(
    executor: LocalExecutor, settings: Settings
) -> None:
    seen = Events(executor)
    executor.submit([workload(1, "sleep")])
    events = seen.until(lambda ev: 1 in started(ev))
    try_pid = started(events)[1].pid
    worker_pid = _parent_of(try_pid)
    os.kill(worker_pid, signal.SIGKILL)
    events = seen.until(lambda ev: 1 in outcomes(ev))
    lost = outcomes(events)[1]
    assert not lost.succeeded and lost.signal == 9
    assert lost.error == "worker process died (killed by signal 9) while running the try"
    assert lost.pid == try_pid
    log = (settings.logs_folder / workload(1, "sleep").log_path).read_text()
    assert "[drayman] failed: worker process died" in log
    _wait_gone(try_pid)  # the orphaned try was killed too: it must not run on unseen
    executor.submit([workload(2)])
    assert outcomes(seen.until(lambda ev: 2 in outcomes(ev)))[2].succeeded


def test_a_task_the_dag_file_no_longer_has_fails(executor: LocalExecutor) -> None:
    seen = Events(executor)
    executor.submit([workload(1, "renamed")])
    events = seen.until(lambda ev: 1 in outcomes(ev))
    assert outcomes(events)[1].error == "DAG 'ex' in dag.py no longer has a task 'renamed'"
    assert 1 in started(events)
    seen.until(lambda _: executor.open_slots() == 4)


def test_a_task_may_use_multiprocessing(executor: LocalExecutor) -> None:
    seen = Events(executor)
    executor.submit([workload(1, "pool")])
    outcome = outcomes(seen.until(lambda ev: 1 in outcomes(ev)))[1]
    assert outcome.result_json == "6", outcome.error


def test_cancel_a_running_try(executor: LocalExecutor) -> None:
    seen = Events(executor)
    executor.submit([workload(1, "sleep"), workload(2, "sleep", seconds=0)])
    seen.until(lambda ev: 1 in started(ev))
    executor.cancel(1)
    events = seen.until(lambda ev: {1, 2} <= set(outcomes(ev)))
    assert outcomes(events)[1].error == "cancelled (killed by signal 15 (SIGTERM))"
    assert outcomes(events)[2].succeeded


def test_cancel_a_waiting_try(settings: Settings) -> None:
    executor = LocalExecutor(settings.with_overrides(parallelism=1), min_warm=1)
    executor.start()
    seen = Events(executor)
    try:
        executor.submit([workload(1, "sleep"), workload(2)])
        executor.cancel(2)
        events = seen.until(lambda ev: 2 in outcomes(ev))
        assert outcomes(events)[2].error == "cancelled before it started"
        assert 2 not in started(events)
    finally:
        executor.stop(grace_s=0)


def test_stop_waits_for_running_tries_within_the_grace(settings: Settings) -> None:
    executor = LocalExecutor(settings)
    executor.start()
    seen = Events(executor)
    executor.submit([workload(1, "sleep", seconds=0.3)])
    seen.until(lambda ev: 1 in started(ev))
    executor.stop(grace_s=5)
    assert outcomes(executor.events())[1].result_json == '"slept"'
    assert executor.fileno() is None
    with pytest.raises(ExecutorError):
        executor.submit([workload(2)])


def test_stop_kills_what_outlives_the_grace(settings: Settings) -> None:
    executor = LocalExecutor(settings, min_warm=1)
    executor.start()
    seen = Events(executor)
    executor.submit([workload(i, "sleep") for i in range(1, 7)])  # 4 run, 2 wait
    events = seen.until(lambda ev: len(started(ev)) == 4)
    began = time.monotonic()
    executor.stop(grace_s=0.2)
    assert time.monotonic() - began < 3
    events = events + executor.events()
    result = outcomes(events)
    assert sorted(result) == [1, 2, 3, 4, 5, 6]
    for try_id, event in started(events).items():
        assert (
            result[try_id].error
            == "killed: the executor is stopping (killed by signal 9 (SIGKILL))"
        )
        _wait_gone(event.pid)
    waiting = [o for o in result.values() if o.try_id not in started(events)]
    assert [o.error for o in waiting] == ["executor stopped before it started"] * 2


def test_idle_workers_beyond_the_warm_ones_retire(executor: LocalExecutor) -> None:
    seen = Events(executor)
    executor.submit([workload(i, "sleep", seconds=0.05) for i in range(4)])
    seen.until(lambda ev: len(outcomes(ev)) == 4)
    assert len(executor.pool._workers) == 4
    deadline = time.monotonic() + 5
    while len(executor.pool._workers) > 2 and time.monotonic() < deadline:
        executor.heartbeat()
        time.sleep(0.05)
    assert len(executor.pool._workers) == 2


def test_dag_callback_workload_runs(executor: LocalExecutor, settings: Settings) -> None:
    seen = Events(executor)
    callback = CallbackWorkload(
        callback="on_failure",
        fileloc="dag.py",
        run=workload(1).run,
        reason="task noop failed",
        log_path="ex/callback.log",
    )
    executor.submit([callback])
    assert executor.open_slots() == 3
    path = settings.logs_folder / "ex" / "callback.log"
    seen.until(lambda _: executor.open_slots() == 4)
    assert "dag callback: task noop failed" in path.read_text()


def _parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} is still running")


def test_a_worker_fetches_a_missing_bundle_from_the_store(
    sqlite_store: Store, tmp_path: Path
) -> None:
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "dag.py").write_text(DAG_FILE)
    packed = pack(folder)
    with sqlite_store.begin() as conn:
        save_bundle(
            conn,
            version=packed.version,
            archive=packed.archive,
            manifest=packed.manifest,
            now=sqlite_store.now(),
        )
    settings = Settings(home=tmp_path / "home", database_url=sqlite_store.url, parallelism=1)
    executor = LocalExecutor(settings, min_warm=1)
    executor.start()
    seen = Events(executor)
    try:
        known = workload(1)
        fetched = replace(known, run=replace(known.run, bundle_version=packed.version))
        missing = replace(known, try_id=2, run=replace(known.run, bundle_version="f" * 64))
        executor.submit([fetched, missing])
        result = outcomes(seen.until(lambda ev: len(outcomes(ev)) == 2))
    finally:
        executor.stop(grace_s=0)
    assert result[1].succeeded, result[1].error
    assert (settings.bundle_cache / packed.version / "dag.py").is_file()
    assert result[2].error == f"bundle {'f' * 12} is not in the store"
    assert "NotFoundError" in (settings.logs_folder / missing.log_path).read_text()


def test_a_worker_that_loaded_many_bundle_versions_is_replaced(settings: Settings) -> None:
    versions = [f"{n:x}" * 64 for n in range(1, 6)]  # five versions: one more than allowed
    for version in versions:
        folder = settings.bundle_cache / version
        folder.mkdir()
        (folder / "dag.py").write_text(DAG_FILE)
    executor = LocalExecutor(settings.with_overrides(parallelism=1), min_warm=1)
    executor.start()
    seen = Events(executor)
    try:
        (first,) = executor.pool._workers
        for try_id, version in enumerate(versions, start=1):
            base = workload(try_id)
            executor.submit([replace(base, run=replace(base.run, bundle_version=version))])
            seen.until(lambda ev, t=try_id: t in outcomes(ev))
        seen.until(
            lambda _: first not in executor.pool._workers and len(executor.pool._workers) == 1
        )
    finally:
        executor.stop(grace_s=0)
    assert all(o.succeeded for o in outcomes(seen.all).values())
