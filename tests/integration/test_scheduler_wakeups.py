"""The scheduler loop (`run()`) wakes when something falls due instead of waiting for its
fallback poll: here every poll and heartbeat is 30 s away, so anything that happens within
a few seconds happened because the loop woke for it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from drayman.states import RunState

if TYPE_CHECKING:
    from support.harness import Harness, MakeHarness

FAILS_ONCE = """
    import os
    from drayman import DAG, task

    MARKERS = "@MARKERS@"

    with DAG("fails_once"):

        @task(retries=1, retry_delay=0.5)
        def fetch(ctx):
            if ctx.try_number == 1:
                raise ConnectionError("503 from the API")
            return ctx.try_number

        fetch()
"""

SLOW_POLLS = {"scheduler_poll_s": 30.0, "heartbeat_interval_s": 30.0, "heartbeat_timeout_s": 90.0}


@contextmanager
def running_loop(h: Harness) -> Iterator[None]:
    stop = threading.Event()
    loop = threading.Thread(target=h.scheduler.run, args=(stop,), daemon=True)
    loop.start()
    try:
        yield
    finally:
        stop.set()
        h.scheduler.wake()
        loop.join(timeout=10)
        assert not loop.is_alive(), "the loop did not stop when woken"


def wait_for_state(h: Harness, dag_id: str, run_id: str, within_s: float) -> str:
    deadline = time.monotonic() + within_s
    state = ""
    while time.monotonic() < deadline:
        state = h.run(dag_id, run_id).state
        if state in (RunState.SUCCESS, RunState.FAILED):
            return state
        time.sleep(0.05)
    return state


def test_a_retry_runs_when_its_delay_is_over_not_at_the_next_poll(
    scheduler_harness: MakeHarness,
) -> None:
    h = scheduler_harness({"fails_once.py": FAILS_ONCE}, **SLOW_POLLS)
    h.trigger("fails_once", run_id="r1")

    with running_loop(h):
        state = wait_for_state(h, "fails_once", "r1", within_s=10)

    assert state == RunState.SUCCESS, f"run still {state!r}: the retry waited for a poll\n" + (
        h.describe()
    )
    first, second = h.tries("fails_once", "r1", "fetch")
    assert (second.queued_at - first.end_date).total_seconds() >= 0.5
