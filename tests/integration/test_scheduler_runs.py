"""The scheduler end to end: DAG files, a real store, real worker processes, tick by tick.

Each test runs on SQLite, PostgreSQL and MariaDB (the `store` fixture) unless it says not.
"""

from __future__ import annotations

import itertools
import json
import logging
import socket
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select, update

from drayman.config import Settings
from drayman.states import RunState, TIState, TryState
from drayman.store import components
from drayman.store.schema import component, task_try

if TYPE_CHECKING:
    from support.harness import MakeHarness

ETL = """
    from drayman import DAG, task

    with DAG("etl"):

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
"""


def test_a_triggered_run_succeeds_and_passes_results_downstream(
    scheduler_harness: MakeHarness,
) -> None:
    h = scheduler_harness({"etl.py": ETL})
    h.trigger("etl", "r1")
    run = h.drive_runs("etl", "r1")["r1"]
    assert run.state == RunState.SUCCESS
    assert run.start_date is not None and run.end_date is not None
    tis = h.tis("etl", "r1")
    assert {key: ti.state for key, ti in tis.items()} == {
        ("extract", -1): TIState.SUCCESS,
        ("transform", -1): TIState.SUCCESS,
        ("load", -1): TIState.SUCCESS,
    }
    assert json.loads(tis[("transform", -1)].result) == {"count": 4, "total": 10}
    assert json.loads(tis[("load", -1)].result) == "loaded 10"
    for task_id in ("extract", "transform", "load"):
        (only,) = h.tries("etl", "r1", task_id)
        assert only.state == TryState.SUCCESS and only.try_number == 1
        assert only.hostname == socket.gethostname()
        assert only.pid is not None and only.pid > 0
        assert only.start_date is not None and only.end_date is not None
        assert only.queued_at <= only.start_date <= only.end_date
        assert only.log_path == f"etl/r1/{task_id}.try_1.log"
        assert (h.settings.logs_folder / only.log_path).is_file()
        assert only.worker_id == h.scheduler.worker_id
    # each task started after its upstream task ended
    tries = {task_id: h.tries("etl", "r1", task_id)[0] for task_id, _ in tis}
    assert tries["extract"].end_date <= tries["transform"].start_date
    assert tries["transform"].end_date <= tries["load"].start_date


TRIGGER_RULES = """
    from drayman import DAG, task

    with DAG("rules"):

        @task
        def boom():
            raise RuntimeError("the source is down")

        @task
        def ok():
            return "ok"

        @task(trigger_rule="all_success")
        def after_all_success():
            return "ran"

        @task(trigger_rule="all_done")
        def after_all_done():
            return "ran"

        @task(trigger_rule="one_failed")
        def after_one_failed():
            return "ran"

        @task(trigger_rule="none_failed")
        def after_none_failed():
            return "ran"

        @task(trigger_rule="none_failed")
        def after_ok_only():
            return "ran"

        @task(trigger_rule="one_failed")
        def alarm_on_ok_only():
            return "ran"

        failed, good = boom(), ok()
        [failed, good] >> after_all_success()
        [failed, good] >> after_all_done()
        [failed, good] >> after_one_failed()
        [failed, good] >> after_none_failed()
        good >> after_ok_only()
        good >> alarm_on_ok_only()

    with DAG("cleanup_only"):

        @task
        def boom():
            raise RuntimeError("the source is down")

        @task(trigger_rule="all_done")
        def cleanup():
            return "cleaned"

        boom() >> cleanup()
"""


def test_trigger_rules_end_to_end(scheduler_harness: MakeHarness) -> None:
    h = scheduler_harness({"rules.py": TRIGGER_RULES})
    h.trigger("rules", "r1")
    h.trigger("cleanup_only", "r1")
    h.drive_runs("rules", "r1")
    h.drive_runs("cleanup_only", "r1")
    assert h.states("rules", "r1") == {
        "boom": TIState.FAILED,
        "ok": TIState.SUCCESS,
        "after_all_success": TIState.UPSTREAM_FAILED,
        "after_all_done": TIState.SUCCESS,
        "after_one_failed": TIState.SUCCESS,
        "after_none_failed": TIState.UPSTREAM_FAILED,
        "after_ok_only": TIState.SUCCESS,
        "alarm_on_ok_only": TIState.SKIPPED,
    }
    assert h.tries("rules", "r1", "after_all_success") == []  # never started
    # a leaf is upstream_failed: the run failed
    assert h.run("rules", "r1").state == RunState.FAILED
    # the failed task is not a leaf and the only leaf succeeded: the run succeeded
    assert h.states("cleanup_only", "r1") == {"boom": "failed", "cleanup": "success"}
    assert h.run("cleanup_only", "r1").state == RunState.SUCCESS


RETRIES = """
    import os
    from drayman import DAG, task

    MARKERS = "@MARKERS@"

    def note_retry(ctx, error):
        with open(os.path.join(MARKERS, f"retry_{ctx.try_number}"), "w") as f:
            f.write(error or "")

    with DAG("flaky"):

        @task(retries=2, retry_delay=0.2, on_retry=note_retry)
        def flaky():
            attempts = len([n for n in os.listdir(MARKERS) if n.startswith("attempt_")])
            open(os.path.join(MARKERS, f"attempt_{attempts + 1}"), "w").close()
            if attempts < 2:
                raise ConnectionError(f"attempt {attempts + 1}: 503 from the API")
            return attempts + 1

        flaky()
"""


def test_retries_wait_their_delay_then_succeed(scheduler_harness: MakeHarness) -> None:
    h = scheduler_harness({"flaky.py": RETRIES})
    h.trigger("flaky", "r1")
    # on_retry runs in the worker after it reported the outcome: wait for its markers too
    h.drive(
        lambda conn: (
            h.finished(conn, "flaky", "r1")
            and (h.markers / "retry_1").exists()
            and (h.markers / "retry_2").exists()
        )
    )
    assert h.run("flaky", "r1").state == RunState.SUCCESS
    ti = h.tis("flaky", "r1")[("flaky", -1)]
    assert (ti.state, ti.try_number, ti.max_tries) == (TIState.SUCCESS, 3, 3)
    assert json.loads(ti.result) == 3
    tries = h.tries("flaky", "r1", "flaky")
    assert [(t.try_number, t.state) for t in tries] == [
        (1, TryState.FAILED),
        (2, TryState.FAILED),
        (3, TryState.SUCCESS),
    ]
    assert tries[0].error == "ConnectionError: attempt 1: 503 from the API"
    assert tries[1].error == "ConnectionError: attempt 2: 503 from the API"
    delay = timedelta(seconds=0.2)
    for before, after in itertools.pairwise(tries):
        assert after.queued_at >= before.end_date + delay, (before, after)
        assert after.start_date >= before.end_date + delay
    assert sorted(p.name for p in h.markers.iterdir()) == [
        "attempt_1",
        "attempt_2",
        "attempt_3",
        "retry_1",
        "retry_2",
    ]
    assert (h.markers / "retry_2").read_text() == "ConnectionError: attempt 2: 503 from the API"


FAN_OUT = """
    from drayman import DAG, task

    with DAG("fan_out", params={"n": 5}):

        @task
        def make_list(ctx) -> list:
            return [f"item{i}" for i in range(ctx.params["n"])]

        @task
        def process(x: str, ctx) -> str:
            return f"{x}@{ctx.map_index}"

        @task(trigger_rule="all_done")
        def collect(results) -> dict:
            return {"got": results}

        collect(process.expand(x=make_list()))
"""


def test_dynamic_fan_out(scheduler_harness: MakeHarness) -> None:
    h = scheduler_harness({"fan_out.py": FAN_OUT})
    h.trigger("fan_out", "five")
    assert h.drive_runs("fan_out", "five")["five"].state == RunState.SUCCESS
    tis = h.tis("fan_out", "five")
    mapped = sorted(index for task_id, index in tis if task_id == "process")
    assert mapped == [-1, 0, 1, 2, 3, 4]
    assert tis[("process", -1)].state == TIState.REMOVED  # the placeholder
    for index in range(5):
        ti = tis[("process", index)]
        assert ti.state == TIState.SUCCESS
        assert json.loads(ti.result) == f"item{index}@{index}"
        (only,) = h.tries("fan_out", "five", "process", index)
        assert only.log_path == f"fan_out/five/process[{index}].try_1.log"
    expected = [f"item{i}@{i}" for i in range(5)]
    assert json.loads(tis[("collect", -1)].result) == {"got": expected}


def test_fan_out_over_an_empty_list(scheduler_harness: MakeHarness) -> None:
    h = scheduler_harness({"fan_out.py": FAN_OUT})
    h.trigger("fan_out", "none", n=0)
    assert h.drive_runs("fan_out", "none")["none"].state == RunState.SUCCESS
    assert h.states("fan_out", "none") == {
        "make_list": TIState.SUCCESS,
        "process": TIState.SKIPPED,  # no instances: the placeholder is skipped
        "collect": TIState.SUCCESS,  # all_done: it runs, and sees no results
    }
    collected = json.loads(h.tis("fan_out", "none")[("collect", -1)].result)
    assert collected == {"got": []}


SELF_KILL = """
    import os, signal
    from drayman import DAG, task

    with DAG("self_kill"):

        @task(retries=1, retry_delay=0)
        def crash(ctx):
            if ctx.try_number == 1:
                os.kill(os.getpid(), signal.SIGKILL)
            return "survived"

        crash()
"""


def test_a_task_killed_by_a_signal_is_retried(scheduler_harness: MakeHarness) -> None:
    h = scheduler_harness({"self_kill.py": SELF_KILL})
    h.trigger("self_kill", "r1")
    assert h.drive_runs("self_kill", "r1")["r1"].state == RunState.SUCCESS
    first, second = h.tries("self_kill", "r1", "crash")
    assert (first.state, first.signal, first.exit_code) == (TryState.FAILED, 9, None)
    assert first.error == "killed by signal 9 (SIGKILL)"
    assert (second.state, second.signal) == (TryState.SUCCESS, None)
    assert json.loads(h.tis("self_kill", "r1")[("crash", -1)].result) == "survived"


NAP = """
    import time
    from drayman import DAG, task

    with DAG("nap"):

        @task(retries=1, retry_delay=0)
        def nap(ctx):
            if ctx.try_number == 1:
                time.sleep(1.5)
                return "woke up too late"
            return "second try"

        nap()
"""


def test_a_try_of_a_worker_that_stopped_heartbeating_is_failed_and_retried(
    scheduler_harness: MakeHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="drayman.scheduler")
    h = scheduler_harness({"nap.py": NAP})
    h.trigger("nap", "r1")
    h.drive(lambda conn: h.states("nap", "r1").get("nap") == TIState.RUNNING)
    (first,) = h.tries("nap", "r1", "nap")
    # Hand the running try to a worker that heartbeat 1.5 s ago and never will again; the
    # scheduler's own worker keeps heartbeating, so it can never be the one that is lost.
    with h.store.begin() as conn:
        last_beat = h.store.db_now(conn) - timedelta(seconds=1.5)
        ghost = components.register(
            conn, kind="worker", hostname="ghost-host", pid=1, executor="celery", now=last_beat
        )
        conn.execute(update(task_try).where(task_try.c.id == first.id).values(worker_id=ghost))
    assert h.drive_runs("nap", "r1")["r1"].state == RunState.SUCCESS
    first, second = h.tries("nap", "r1", "nap")
    assert first.state == TryState.FAILED
    assert first.error == "the worker on ghost-host stopped heartbeating: try lost"
    assert first.end_date >= last_beat + _timeout(h.settings)
    assert (second.state, second.worker_id) == (TryState.SUCCESS, h.scheduler.worker_id)
    assert json.loads(h.tis("nap", "r1")[("nap", -1)].result) == "second try"
    with h.store.read() as conn:
        state = conn.execute(select(component.c.state).where(component.c.id == ghost)).scalar()
    assert state == "stopped"
    # The first try's process was never told; its late outcome is refused by the fence.
    h.drive(lambda conn: any("try.fenced" in r.getMessage() for r in caplog.records))
    first, _ = h.tries("nap", "r1", "nap")
    assert first.state == TryState.FAILED and "stopped heartbeating" in first.error
    assert h.tis("nap", "r1")[("nap", -1)].state == TIState.SUCCESS


def _timeout(settings: Settings) -> timedelta:
    """heartbeat_timeout_s, less a little: the scheduler judges staleness by the database's
    clock inside its transaction but dates the lost try with the `now` it read just before."""
    return timedelta(seconds=settings.heartbeat_timeout_s - 0.05)


CALLBACKS = """
    import json, os
    from drayman import DAG, task

    MARKERS = "@MARKERS@"

    def remember(name):
        def callback(ctx, reason):
            path = os.path.join(MARKERS, f"{ctx.dag_id}.{name}")
            with open(path, "w") as f:
                json.dump({"run_id": ctx.run_id, "reason": reason}, f)
        return callback

    with DAG("doomed", on_success=remember("on_success"), on_failure=remember("on_failure")):

        @task
        def boom():
            raise RuntimeError("the warehouse is full")

        boom()

    with DAG("fine", on_success=remember("on_success"), on_failure=remember("on_failure")):

        @task
        def ok():
            return 1

        ok()
"""


def test_dag_callbacks_run_when_a_run_ends(scheduler_harness: MakeHarness) -> None:
    h = scheduler_harness({"callbacks.py": CALLBACKS})
    h.trigger("doomed", "r1")
    h.trigger("fine", "r1")
    failed = h.markers / "doomed.on_failure"
    succeeded = h.markers / "fine.on_success"
    h.drive(lambda conn: failed.exists() and succeeded.exists())
    assert h.run("doomed", "r1").state == RunState.FAILED
    assert h.run("fine", "r1").state == RunState.SUCCESS
    assert json.loads(failed.read_text()) == {"run_id": "r1", "reason": "failed"}
    assert json.loads(succeeded.read_text()) == {"run_id": "r1", "reason": "success"}
    # only the callback that matches the outcome ran
    assert sorted(p.name for p in h.markers.iterdir()) == ["doomed.on_failure", "fine.on_success"]


SLOW = """
    import time
    from drayman import DAG, task

    with DAG("slow"):

        @task(retries=2, retry_delay=0)
        def slow():
            time.sleep(0.6)
            return "done"

        slow()
"""


def test_a_scheduler_declared_dead_keeps_its_tries_once_it_heartbeats_again(
    scheduler_harness: MakeHarness,
) -> None:
    h = scheduler_harness({"slow.py": SLOW})
    # This scheduler stalled past heartbeat_timeout and another scheduler marked it stopped.
    with h.store.begin() as conn:
        now = h.store.db_now(conn)
        conn.execute(update(component).values(heartbeat_at=now - timedelta(seconds=10)))
        cutoff = now - timedelta(seconds=h.settings.heartbeat_timeout_s)
        assert components.mark_dead(conn, "worker", cutoff, now) == 1
        assert components.mark_dead(conn, "scheduler", cutoff, now) == 1
    # It resumes: its heartbeats say it is alive, so its new tries are not lost.
    h.trigger("slow", "r1")
    assert h.drive_runs("slow", "r1")["r1"].state == RunState.SUCCESS
    (only,) = h.tries("slow", "r1", "slow")
    assert (only.state, only.error) == (TryState.SUCCESS, None)
    with h.store.read() as conn:
        states = conn.execute(select(component.c.state)).scalars().all()
    assert states == ["running", "running"]


STUCK = """
    import time
    from drayman import DAG, task

    with DAG("stuck"):

        @task(retries=1, retry_delay=0)
        def stuck(ctx):
            if ctx.try_number == 1:
                time.sleep(60)
            return "second try"

        stuck()
"""


def test_a_restarted_scheduler_retries_the_tries_its_crashed_predecessor_left(
    scheduler_harness: MakeHarness,
) -> None:
    h = scheduler_harness({"stuck.py": STUCK})
    h.trigger("stuck", "r1")
    h.drive(lambda conn: h.states("stuck", "r1").get("stuck") == TIState.RUNNING)
    old_worker = h.scheduler.worker_id
    h.crash_and_restart()
    with h.store.read() as conn:
        last_beat = conn.execute(
            select(component.c.heartbeat_at).where(component.c.id == old_worker)
        ).scalar_one()
    # the new scheduler's clock is past the old worker's heartbeat timeout: no waiting for it
    later = h.store.now() + timedelta(seconds=h.settings.heartbeat_timeout_s + 1)
    assert h.drive_runs("stuck", "r1", now=later)["r1"].state == RunState.SUCCESS
    first, second = h.tries("stuck", "r1", "stuck")
    assert (first.state, first.worker_id) == (TryState.FAILED, old_worker)
    assert first.error == f"the worker on {socket.gethostname()} stopped heartbeating: try lost"
    assert first.end_date >= last_beat + _timeout(h.settings)
    assert (second.state, second.worker_id) == (TryState.SUCCESS, h.scheduler.worker_id)
    with h.store.read() as conn:
        state = conn.execute(select(component.c.state).where(component.c.id == old_worker))
        assert state.scalar_one() == "stopped"
