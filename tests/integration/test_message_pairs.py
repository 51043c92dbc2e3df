"""Two tries to a message (ADR 11): the second never waits long on a worker that has no slot.

The scheduler sends the tries of one queue up to `TRIES_PER_MESSAGE` to a message, and a
worker claims the second only when a slot frees. With long tasks that could leave it waiting
on a busy worker while another idles; instead it is sent again after `worker_hold_s`, or at
once when its worker is told to stop. Real `drayman worker` subprocesses, a throwaway Redis,
PostgreSQL and MariaDB; the scheduler ticks in this process.
"""

from __future__ import annotations

import signal
import textwrap
from typing import Any

import pytest
from chaos_harness import Chaos, chaos_fixture

from drayman.states import RunState, TryState

pytestmark = pytest.mark.slow

PAIR = "pair"
SLEEP_S = 4.0

DAGS = {
    "pair.py": textwrap.dedent(f"""
        import time
        from drayman import DAG, task

        with DAG("{PAIR}"):
            for name in ("first", "second"):

                @task(task_id=name)
                def sleeper() -> None:
                    time.sleep({SLEEP_S})

                sleeper()
    """),
}


# queued_timeout_s far away: only the worker sending a try again can move it in time
chaos = chaos_fixture(DAGS, queued_timeout_s=60)


def _run_tries(c: Chaos) -> dict[str, Any]:
    tries = c.tries()
    assert all(len(rows) == 1 for rows in tries.values()), c.describe()  # none ran twice
    return {task_id: rows[0] for task_id, rows in tries.items()}


def _overlap(a: Any, b: Any) -> bool:
    return bool(a.start_date < b.end_date and b.start_date < a.end_date)


def test_a_held_try_moves_to_an_idle_worker(chaos: Chaos) -> None:
    busy = chaos.start_worker("busy", concurrency=1, DRAYMAN_WORKER_HOLD_S="0.5")
    chaos.trigger(PAIR, "r1")
    # both tries go out in one message, which only the busy worker can take
    chaos.drive(lambda conn: "task.started" in busy.log(), 20, what="the first try started")
    idle = chaos.start_worker("idle", concurrency=1)

    chaos.drive(chaos.run_finished(PAIR, "r1"), 3 * SLEEP_S, what="run r1 finished")

    assert chaos.run_state(PAIR, "r1") == RunState.SUCCESS, chaos.describe()
    first, second = sorted(_run_tries(chaos).values(), key=lambda t: t.start_date)
    assert (first.state, second.state) == (TryState.SUCCESS, TryState.SUCCESS)
    assert first.worker_id == chaos.component(busy).id
    assert second.worker_id == chaos.component(idle).id
    assert _overlap(first, second), "the second try waited for the first one's slot"
    assert "try.released" in busy.log() and "tries.sent_again" in busy.log()


def test_a_stopping_worker_sends_its_held_try_again_at_once(chaos: Chaos) -> None:
    stopping = chaos.start_worker("stopping", concurrency=1, DRAYMAN_WORKER_HOLD_S="600")
    chaos.trigger(PAIR, "r1")
    chaos.drive(lambda conn: "task.started" in stopping.log(), 20, what="the first try started")
    other = chaos.start_worker("other", concurrency=1)

    stopping.process.send_signal(signal.SIGTERM)  # its running try may finish (grace 300 s)
    chaos.drive(chaos.run_finished(PAIR, "r1"), 3 * SLEEP_S, what="run r1 finished")

    assert stopping.process.wait(timeout=30) == 0
    first, second = sorted(_run_tries(chaos).values(), key=lambda t: t.start_date)
    assert (first.state, second.state) == (TryState.SUCCESS, TryState.SUCCESS)
    assert first.worker_id == chaos.component(stopping).id
    assert second.worker_id == chaos.component(other).id
    assert _overlap(first, second), "the held try waited for the stopping worker"
