"""`drayman tasks logs`: one try's log, printed or followed while the try runs."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from support.cli import DRAYMAN

if TYPE_CHECKING:
    from support.cli import Drayman

TALKS_SLOWLY = """
    import time
    from pathlib import Path

    from drayman import DAG, task

    with DAG("talks_slowly", schedule=None):

        @task
        def talk(ctx) -> None:
            print("before the nap", flush=True)
            gate = Path(ctx.conf["gate"])
            while not gate.exists():  # the test opens it once it follows the log
                time.sleep(0.05)
            print("after the nap", flush=True)

        talk()
"""


def _try_state(d: Drayman, run_id: str) -> str | None:
    shown: dict[str, Any] = d.show("talks_slowly", run_id)
    (ti,) = shown["task_instances"]
    return ti["tries"][0]["state"] if ti["tries"] else None


@pytest.mark.slow
def test_follow_prints_the_log_until_the_try_ends(
    make_drayman: Callable[..., Drayman], tmp_path: Path
) -> None:
    d = make_drayman("task-logs")
    gate = tmp_path / "gate"
    d.write_dag("talks_slowly.py", TALKS_SLOWLY)
    d.ok("db", "migrate")
    with d.serve("scheduler"):
        d.wait_for(lambda: "talks_slowly" in d.dags_by_id(), 30, "the DAG to be parsed")
        run_id = d.trigger("talks_slowly", {"gate": str(gate)})
        d.wait_for(lambda: _try_state(d, run_id) == "running", 30, "the try to start", 0.1)

        # the try waits for the gate, so it is still running when following begins
        with subprocess.Popen(
            [str(DRAYMAN), "tasks", "logs", "talks_slowly", run_id, "talk", "--follow"],
            env=d.env,
            cwd=d.root,
            stdout=subprocess.PIPE,
            text=True,
        ) as follow:
            assert follow.stdout is not None
            seen = ""
            for line in follow.stdout:
                seen += line
                if "before the nap" in line:
                    break
            assert "before the nap" in seen, seen
            assert follow.poll() is None, "it returned before the try ended"
            gate.touch()
            out = seen + follow.stdout.read()
            assert follow.wait(timeout=60) == 0, out
        assert _try_state(d, run_id) == "success"
        assert out.index("before the nap") < out.index("after the nap"), d.last
        assert "[drayman] success in " in out.splitlines()[-1], d.last

        # after the try: the same log, printed once
        assert d.ok("tasks", "logs", "talks_slowly", run_id, "talk", "--try", "1") == out

        missing = d.cli("tasks", "logs", "talks_slowly", run_id, "nope")
        assert missing.returncode == 3, d.last
        assert "no task 'nope'" in missing.stderr
        no_try = d.cli("tasks", "logs", "talks_slowly", run_id, "talk", "--try", "2")
        assert no_try.returncode == 3, d.last
        assert "no try 2: its tries are 1 to 1" in no_try.stderr
        unknown_run = d.cli("tasks", "logs", "talks_slowly", "no-such-run", "talk")
        assert unknown_run.returncode == 3, d.last
