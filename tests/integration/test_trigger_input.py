"""A manual run's conf and run id, checked in `scheduler.runs.trigger` where the CLI, the
pages and the API all come (unit cases in tests/unit/test_conf.py and test_run_ids.py): what
is refused leaves nothing behind, what is accepted is stored and read back exactly, and a
scheduled run whose id is taken is logged. On SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import func, select

from drayman import run_creation
from drayman.conf import ConfLimits
from drayman.exceptions import ParamsError, RunIdError
from drayman.spec import DagSpec, ParamSpec, ParsedDag, TaskSpec
from drayman.store import dags as dag_store
from drayman.store import runs as run_store
from drayman.store.engine import Store
from drayman.store.schema import dag_run

if TYPE_CHECKING:
    from support.harness import MakeHarness
    from support.seed import Seed

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
SPEC = DagSpec(
    dag_id="plain",
    fileloc="plain.py",
    params={"rows": ParamSpec(50), "label": ParamSpec("x")},
    tasks={"a": TaskSpec("a", "python")},
)


def _publish(store: Store) -> None:
    with store.begin() as conn:
        dag_store.record_parse(
            conn, bundle_version="v1", dags=[ParsedDag(SPEC, "# plain")], errors=[], now=NOW
        )


def _trigger(store: Store, conf: Any, run_id: str | None = None) -> str:
    with store.begin() as conn:
        return run_creation.trigger(
            conn,
            "plain",
            conf=conf,
            triggered_by="t",
            now=NOW,
            run_id=run_id,
            limits=ConfLimits(max_bytes=2048, max_depth=8),
        )


def _count(store: Store) -> int:
    with store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(dag_run)).scalar_one())


@pytest.mark.parametrize(
    ("conf", "run_id", "error", "message"),
    [
        ({"rows": "many"}, None, ParamsError, "DAG 'plain': param 'rows': expected integer"),
        ({"label": 3}, None, ParamsError, "param 'label': expected string"),
        ({"x": "a\x00b"}, None, ParamsError, "conf.x: the string holds a NUL"),
        ({"x": "\udc80"}, None, ParamsError, "lone surrogate"),
        ({"x": float("inf")}, None, ParamsError, "no NaN or Infinity"),
        ({"x": [[[[[[[[[1]]]]]]]]]}, None, ParamsError, "deeper than 8 levels"),
        ({"x": "y" * 3000}, None, ParamsError, "over the limit of 2048"),
        ({}, "scheduled__2026-03-01T12:00:00+00:00", RunIdError, "reserved"),
        ({}, "backfill__x", RunIdError, "reserved"),
        ({}, "SCHEDULED__2026-03-01T12:00:00+00:00", RunIdError, "reserved"),
        ({}, "BackFill__x", RunIdError, "reserved"),
        ({}, "../../etc", RunIdError, "'/'"),
        ({}, "a" * 251, RunIdError, "over the limit of 250"),
    ],
)
def test_a_refused_trigger_leaves_nothing_behind(
    store: Store, conf: Any, run_id: str | None, error: type[Exception], message: str
) -> None:
    _publish(store)
    with pytest.raises(error, match=message):
        _trigger(store, conf, run_id)
    assert _count(store) == 0


def test_an_accepted_conf_is_stored_and_read_back_exactly(store: Store) -> None:
    _publish(store)
    conf = {
        "rows": 10**30,
        "label": "naïve ✓ 🚂 \u2028 <b>&amp;</b> ' \" \\",
        "🔑": [None, True, -0.0, 1e308, {"deep": [[["x"]]]}],
    }
    run_id = _trigger(store, conf, "nightly.fix-2:+")
    with store.read() as conn:
        run = run_store.get_run(conn, "plain", run_id)
    assert json.loads(run.conf) == conf
    assert json.loads(run.params) == {"rows": 10**30, "label": conf["label"]}


HOURLY = """
    from drayman import DAG, task

    @task
    def hour(ctx) -> None:
        return None

    with DAG("hourly", schedule="@hourly", start_date="2024-01-01", catchup=False):
        hour()
"""


def test_a_scheduled_run_whose_id_is_taken_is_logged(
    scheduler_harness: MakeHarness, seed: Seed, caplog: pytest.LogCaptureFixture
) -> None:
    """A run made before manual ids were checked may hold a scheduled run's id: the scheduler
    cannot make that run, and says so instead of passing silently."""
    h = scheduler_harness({"hourly.py": HOURLY})
    now = datetime(2024, 1, 1, 5, 30, tzinfo=UTC)
    taken = "scheduled__2024-01-01T04:00:00+00:00"
    with h.store.begin() as conn:
        bundle = dag_store.get_dag(conn, "hourly").bundle_version
        spec = dag_store.load_spec(conn, "hourly", bundle)
        seed.run(conn, spec, taken, bundle=bundle, now=now, start=False, triggered_by="alice")
    with caplog.at_level(logging.WARNING, logger="drayman.scheduler"):
        assert h.tick(now).runs_created == 0
    assert f"run.id_taken dag=hourly run_id={taken} taken_by=alice" in caplog.text
    assert "a manual run already has this id" in caplog.text
