"""The UI benchmark's history generator (bench/ui_data.py) at a tiny scale, on PostgreSQL.

The generator runs as `python -m bench.ui_data` into a scratch database; then drayman's own
store functions must read what it wrote as if drayman had written it: specs that match the
task instances, runs on the DAG's timetable, tries fenced by `current_try_id`, log chunks.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bench import ui_data, ui_history
from sqlalchemy import create_engine, text

from drayman.store import dags as dag_store
from drayman.store import logs as log_store
from drayman.store import runs as run_store
from drayman.store import task_instances as ti_store
from drayman.store import try_history
from drayman.store.engine import Store
from drayman.timetables import parse_schedule
from drayman.workloads import log_relpath

ROOT = Path(__file__).resolve().parents[2]
SCALE = 0.001


@pytest.fixture
def admin_url(postgres_url: str) -> str:
    """The server's maintenance database (postgres_url skips, or fails under CI, without one)."""
    return postgres_url.rsplit("/", 1)[0] + "/postgres"


@pytest.fixture
def scratch_name(admin_url: str) -> Iterator[str]:
    """The name of a PostgreSQL database of this test's own, dropped afterwards."""
    name = f"drayman_test_ui_{uuid.uuid4().hex[:8]}"
    yield name
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def scratch_url(admin_url: str, scratch_name: str) -> str:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{scratch_name}"'))
    admin.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{scratch_name}"


def generate(url: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.ui_data", "--scale", str(SCALE), "--database-url", url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"generator failed:\n{done.stdout}\n{done.stderr}"
    assert "rows/s" in done.stderr  # progress goes to stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_tiny_history_reads_back_through_drayman_store(scratch_url: str) -> None:
    result = generate(scratch_url)
    summary, targets = result["summary"], ui_data.Targets(**result["targets"])

    counts = ui_data.counts(scratch_url)
    assert counts["dag"] == counts["serialized_dag"] == summary["dags"] == 3
    assert counts["dag_run"] == summary["runs"] > 0
    assert counts["task_instance"] == summary["task_instances"] >= 300
    assert counts["task_try"] == summary["tries"] >= 300
    assert counts["log_chunk"] > 128  # the big log alone is 128 chunks of 64 KB
    marker = ui_data.read_marker(scratch_url)
    assert marker is not None and marker["summary"] == summary

    store = Store(scratch_url)
    try:
        with store.read() as conn:
            check_specs_match_task_instances(conn)
            check_runs_follow_the_timetable(conn)
            check_gantt_run(conn, targets)
            check_big_log(conn, targets)
    finally:
        store.dispose()


def check_specs_match_task_instances(conn: Any) -> None:
    for row in dag_store.list_dags(conn):
        spec = dag_store.load_spec(conn, row.dag_id, row.bundle_version)
        assert "from drayman import DAG" in dag_store.load_source(
            conn, row.dag_id, row.bundle_version
        )
        runs = run_store.list_runs(conn, dag_id=row.dag_id, limit=50)
        assert runs and all(r.bundle_version == row.bundle_version for r in runs)
        tis = ti_store.of_runs(conn, [r.id for r in runs])
        for run in runs:
            assert {ti.task_id for ti in tis if ti.dag_run_id == run.id} == set(spec.tasks)
        assert row.next_run_after is not None and not row.needs_next


def check_runs_follow_the_timetable(conn: Any) -> None:
    for row in dag_store.list_dags(conn):
        runs = run_store.list_runs(conn, dag_id=row.dag_id, limit=1000)[::-1]
        expected = parse_schedule(row.schedule, row.timezone).runs_between(
            runs[0].logical_date, runs[-1].logical_date, start_date=None
        )
        assert [r.logical_date for r in runs] == [e.logical_date for e in expected]
        assert [r.data_interval_end for r in runs] == [e.data_interval_end for e in expected]
        assert all(r.run_id == run_store.run_id_for("scheduled", r.logical_date) for r in runs)
        assert runs[-1].run_after <= ui_history.HISTORY_END


def check_gantt_run(conn: Any, targets: ui_data.Targets) -> None:
    run = run_store.get_run(conn, targets.gantt_dag_id, targets.gantt_run_id)
    assert run.state in ("success", "failed") and run.end_date > run.start_date
    rows = try_history.tries_of_run(conn, run.id)
    assert len({r.task_id for r in rows}) == ui_history.GANTT_DAG_TASKS
    assert any(r.try_number == 2 for r in rows), "the Gantt run shows no retry"
    for r in rows:
        if r.id is None:
            assert r.ti_state == "upstream_failed"
            continue
        assert r.queued_at <= r.start_date < r.end_date
        assert r.log_path == log_relpath(run.dag_id, run.run_id, r.task_id, -1, r.try_number)
        if r.state == "failed":
            assert (r.exit_code, r.error) == (1, ui_history.FAIL_ERROR)
    newest = {}
    for r in rows:
        newest[r.task_id] = r  # ordered by try number: the last one is the fence
    fences = conn.execute(
        text("SELECT task_id, current_try_id FROM task_instance WHERE dag_run_id = :r"),
        {"r": run.id},
    )
    assert {t: f for t, f in fences} == {t: r.id for t, r in newest.items()}


def check_big_log(conn: Any, targets: ui_data.Targets) -> None:
    chunks = log_store.read_chunks(conn, targets.big_log_try_id)
    assert [seq for seq, _ in chunks] == list(range(len(chunks)))
    assert sum(len(data) for _, data in chunks) >= ui_data.BIG_LOG_BYTES
    assert chunks[0][1].startswith("[drayman] try ")


def test_generator_is_deterministic() -> None:
    plans = ui_history.plan(SCALE, seed=7)
    assert plans == ui_history.plan(SCALE, seed=7)

    def rows() -> list[tuple[Any, ...]]:
        return [
            (t.id, t.ti.id, t.ti.task_id, t.state, t.queued_at, t.end)
            for batch in ui_history.history(plans, seed=7)
            for t in batch.tries
        ]

    assert rows() == rows()
    assert plans[0].dag_id == ui_history.BIG_DAG_ID and len(plans[0].tasks) == 100
    assert plans[1].dag_id == ui_history.GANTT_DAG_ID and len(plans[1].tasks) == 200


def test_full_scale_plan_holds_a_million_tries() -> None:
    plans = ui_history.plan(1.0)
    assert len(plans) == ui_history.DAGS
    assert plans[0].days == ui_history.HISTORY_DAYS
    assert max(len(p.tasks) for p in plans[2:]) <= 100
    # about 2% of task instances need a second try: the plan aims just above 1M tries
    assert sum(len(p.tasks) * p.days for p in plans) * 1.01 >= 1_000_000


@pytest.mark.slow
def test_ensure_reuses_a_complete_database(admin_url: str, scratch_name: str) -> None:
    first = ui_data.ensure(scale=SCALE, admin_url=admin_url, name=scratch_name)
    second = ui_data.ensure(scale=SCALE, admin_url=admin_url, name=scratch_name)
    other_seed = ui_data.ensure(scale=SCALE, seed=5, admin_url=admin_url, name=scratch_name)

    assert (first.reused, second.reused, other_seed.reused) == (False, True, False)
    assert second.targets == first.targets and second.summary == first.summary


def test_bench_ui_refuses_sqlite() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "run", "UI", "--db", "sqlite", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "workload UI runs on --db postgresql only" in done.stderr


def test_page_paths_quote_run_ids() -> None:
    from bench.ui import page_paths, server_time_s

    paths = page_paths(ui_data.Targets("a", "g", "scheduled__2026-01-01T00:00:00+00:00", 7))
    assert paths["gantt"] == "/dags/g/runs/scheduled__2026-01-01T00%3A00%3A00%2B00%3A00"
    assert paths["log"] == "/tries/7"
    assert server_time_s({"Server-Timing": "db;dur=3.5, total;dur=12.5"}) == 0.0125
    assert server_time_s({"server-timing": "app;dur=20"}) == 0.02
    assert server_time_s({}) is None
