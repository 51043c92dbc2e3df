"""`drayman standalone` outlives a run whose tries cannot be dispatched.

The run's conf is written into the SQLite database straight, 900 levels deep (an old or
restored database may hold one; the entry points refuse it today): its tries cannot be pickled
to a worker process. They fail with the reason in their log; standalone keeps running the
other runs, and exits 0 on SIGTERM.
"""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from support.cli import Drayman

GATED = """
    import time
    from pathlib import Path

    from drayman import DAG, task

    with DAG("gated", schedule=None, max_active_runs=1):

        @task
        def first(ctx) -> str:
            gate = ctx.conf.get("gate")
            while gate and not Path(gate).exists():  # the test opens it
                time.sleep(0.05)
            return "first ran"

        @task
        def second() -> str:
            return "second ran"

        first()
        second()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_standalone_fails_the_tries_of_a_too_deep_conf_and_runs_on(
    make_drayman: Callable[..., Drayman],
) -> None:
    d = make_drayman("undispatchable", web_port=str(free_port()))
    d.write_dag("gated.py", GATED)
    gate = d.root / "gate"
    with d.serve("standalone", grace=2.0):
        d.wait_for(lambda: "gated" in d.dags_by_id(), 30, "the DAG to be published")
        blocker = d.trigger("gated", {"gate": str(gate)})
        deep = d.trigger("gated")  # waits behind the blocker: max_active_runs=1
        deep_conf = '{"a": ' * 900 + "1" + "}" * 900
        with sqlite3.connect(d.home / "drayman.db") as db:
            changed = db.execute(
                "UPDATE dag_run SET conf = ? WHERE run_id = ? AND state = 'queued'",
                (deep_conf, deep),
            ).rowcount
        assert changed == 1, "the deep run started before its conf was written"
        gate.write_text("open")
        d.wait_run("gated", blocker, "success")
        shown = d.wait_run("gated", deep, "failed")
        for ti in shown["task_instances"]:
            assert ti["state"] == "failed", shown
        log = d.ok("tasks", "logs", "gated", deep, "first")
        assert "not run: cannot be dispatched: RecursionError" in log, log
        after = d.trigger("gated")
        d.wait_run("gated", after, "success")  # wait_run fails at once if standalone died
