"""Broken DAG files are reported with file and line, and hurt nobody else: a syntax error, a
file that hangs at import (stopped at DRAYMAN_PARSE_TIMEOUT_S) and one that kills its own
interpreter sit next to a good DAG, which still runs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from support.cli import Drayman, Server

GOOD = """
    from drayman import DAG, Shell, task

    with DAG("good", schedule="@daily", start_date="2026-01-01", catchup=False):

        @task
        def hello() -> str:
            print("hello from the good DAG")
            return "ok"

        hello() >> Shell("shout", "echo good shell says hi")
"""

# every broken file mentions "drayman" and "DAG", or the parser would not even try it
SYNTAX_ERROR = """
    # a drayman DAG file with a typo
    from drayman import DAG

    def broken(:
        pass
"""

HANGS = """
    # a drayman DAG file that never finishes importing
    import time

    from drayman import DAG

    while True:
        time.sleep(1)
"""

EXITS = """
    # a drayman DAG file that ends the interpreter that imports it
    import os

    from drayman import DAG

    os._exit(1)
"""


@pytest.fixture(scope="module")
def scheduler(make_drayman: Callable[..., Drayman]) -> Iterator[tuple[Drayman, Server]]:
    d = make_drayman("broken", parse_timeout_s="2")
    d.write_dag("good.py", GOOD)
    d.write_dag("syntax_error.py", SYNTAX_ERROR)
    d.write_dag("hangs.py", HANGS)
    d.write_dag("nested/exits.py", EXITS)
    d.ok("db", "migrate")
    with d.serve("scheduler") as server:
        yield d, server


def _errors(d: Drayman) -> dict[str, dict[str, Any]]:
    return {e["fileloc"]: e for e in d.json("dags", "errors", "--exit-zero")}


def test_errors_name_file_line_and_cause(scheduler: tuple[Drayman, Server]) -> None:
    d, server = scheduler
    errors = _errors(d)
    assert sorted(errors) == ["hangs.py", "nested/exits.py", "syntax_error.py"]

    syntax = errors["syntax_error.py"]
    assert syntax["lineno"] == 4, syntax
    assert "syntax" in syntax["message"].lower(), syntax

    hang = errors["hangs.py"]
    assert "took longer than 2 s" in hang["message"], hang
    assert "DRAYMAN_PARSE_TIMEOUT_S" in hang["message"], hang

    exits = errors["nested/exits.py"]
    assert "exit code 1" in exits["message"], exits

    # the text forms say the same, with file:line
    errors_cmd = d.cli("dags", "errors")
    assert errors_cmd.returncode == 1, f"import errors fail `dags errors`:\n{d.last}"
    text = errors_cmd.stdout
    assert "syntax_error.py:4: " in text
    assert "hangs.py" in text and "nested/exits.py" in text
    listing = d.cli("dags", "list")
    assert listing.returncode == 0, d.last
    assert "import error: syntax_error.py:4:" in listing.stderr
    # the scheduler logged them and kept going
    out = server.output()
    assert "dag.import_error" in out and "errors=3" in out


def test_only_the_good_dag_is_listed(scheduler: tuple[Drayman, Server]) -> None:
    d, _server = scheduler
    assert list(d.dags_by_id()) == ["good"]
    assert d.dags_by_id()["good"]["fileloc"] == "good.py"


def test_good_dag_still_runs(scheduler: tuple[Drayman, Server]) -> None:
    d, _server = scheduler
    shown = d.wait_run("good", d.trigger("good"))
    assert {ti["task_id"]: ti["state"] for ti in shown["task_instances"]} == {
        "hello": "success",
        "shout": "success",
    }
    # and its scheduled run (catchup=False: the latest complete day) ran too
    scheduled = d.wait_for(
        lambda: [r for r in d.runs("good") if r["run_type"] == "scheduled"],
        30,
        "the scheduled run of DAG good",
    )
    d.wait_run("good", scheduled[0]["run_id"])
