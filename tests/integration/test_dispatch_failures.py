"""A try that cannot be dispatched fails alone, with the reason in its log; the scheduler runs on.

The runs' conf is written straight into the store, as a database restored from elsewhere or
an older version without entry-point checks could hold it: dispatch must not rely on the API
having refused it. Each test runs on SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import update

from drayman.states import RunState, TryState
from drayman.store.schema import dag_run
from drayman.web.log_chunks import log_page
from support.waiting import wait_until

if TYPE_CHECKING:
    from support.harness import Harness, MakeHarness

TWO = """
    from drayman import DAG, task

    def said(ctx, reason):
        print("on_failure:", reason)

    # its callback's workload carries the conf too: it cannot be sent either
    with DAG("two", on_failure=said):

        @task
        def first(ctx) -> str:
            return "first ran"

        @task
        def second(ctx) -> str:
            return "second ran"

        first()
        second()
"""


def deep_json(depth: int) -> str:
    """A JSON object nested `depth` levels: stores fine, but Python cannot pickle (about
    500 levels) or even parse (about 1000) it with its default recursion limit."""
    return '{"a": ' * depth + "1" + "}" * depth


def set_conf(h: Harness, run_id: str, raw: str) -> None:
    """Write a run's conf straight into the store, bypassing every entry point's checks."""
    with h.store.begin() as conn:
        conn.execute(update(dag_run).where(dag_run.c.run_id == run_id).values(conf=raw))


def try_log(h: Harness, try_id: int) -> str:
    """The try's log as `drayman tasks logs` and the web read it: the store's chunks, else
    the local file."""
    page = log_page(h.store, h.settings, try_id, -1, 100)
    return "".join(item["text"] for item in page["items"])


def assert_failed_alone(h: Harness, bad: str, good: str, reason: str) -> None:
    runs = h.drive_runs("two", bad, good, timeout=30)
    assert runs[good].state == RunState.SUCCESS, h.describe()
    assert runs[bad].state == RunState.FAILED, h.describe()
    for task_id in ("first", "second"):
        (only,) = h.tries("two", bad, task_id)
        assert only.state == TryState.FAILED
        assert "cannot be dispatched" in only.error and reason in only.error, only.error
        text = try_log(h, only.id)
        assert "cannot be dispatched" in text and reason in text, text
        assert len(only.error) <= 500


def test_a_conf_too_deep_to_send_fails_its_tries_and_the_rest_run(
    scheduler_harness: MakeHarness,
) -> None:
    h = scheduler_harness({"two.py": TWO})
    h.trigger("two", "deep")
    h.trigger("two", "fine")
    set_conf(h, "deep", deep_json(900))  # parses; too deep to pickle to a worker
    assert_failed_alone(h, "deep", "fine", "RecursionError")


def test_a_conf_too_deep_to_read_fails_its_tries_and_the_rest_run(
    scheduler_harness: MakeHarness,
) -> None:
    h = scheduler_harness({"two.py": TWO})
    h.trigger("two", "deep")
    h.trigger("two", "fine")
    set_conf(h, "deep", deep_json(5000))  # too deep even to parse
    assert_failed_alone(h, "deep", "fine", "RecursionError")


def test_a_conf_that_is_not_json_fails_its_tries_and_the_rest_run(
    scheduler_harness: MakeHarness,
) -> None:
    h = scheduler_harness({"two.py": TWO})
    h.trigger("two", "broken")
    h.trigger("two", "fine")
    set_conf(h, "broken", '{"a": ')
    assert_failed_alone(h, "broken", "fine", "JSONDecodeError")


def h_finished(h: Harness, run_id: str) -> bool:
    with h.store.read() as conn:
        return h.finished(conn, "two", run_id)


def wait_done(h: Harness, done: Callable[[], bool], what: str) -> None:
    wait_until(done, 30.0, what, last=h.describe)


def test_the_scheduler_loop_survives_a_try_it_cannot_send(
    scheduler_harness: MakeHarness,
) -> None:
    """`Scheduler.run()`, as `drayman scheduler` and `standalone` call it, keeps running."""
    h = scheduler_harness({"two.py": TWO})
    h.trigger("two", "deep")
    set_conf(h, "deep", deep_json(900))
    stop = threading.Event()
    crashed: list[BaseException] = []

    def loop() -> None:
        try:
            h.scheduler.run(stop)
        except BaseException as exc:
            crashed.append(exc)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        wait_done(h, lambda: h_finished(h, "deep") or bool(crashed), "run deep to finish")
        assert not crashed, crashed
        h.trigger("two", "after")  # the loop's own fallback poll finds it
        wait_done(h, lambda: h_finished(h, "after") or bool(crashed), "run after to finish")
        assert not crashed, crashed
        assert thread.is_alive()
    finally:
        stop.set()
        h.scheduler.wake()
        thread.join(timeout=30)
    assert h.run("two", "after").state == RunState.SUCCESS
    assert json.loads(h.run("two", "after").conf) == {}
