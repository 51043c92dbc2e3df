"""The benchmark runs end to end: short W2 and W4 runs, and `python -m bench floor`.

Only the shape of the report is checked. Speed goals live in the benchmark (bench/README.md),
never in tests: a loaded CI machine must not turn a test red.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow  # short benchmark runs end to end

ROOT = Path(__file__).resolve().parents[2]
KEYS = {
    "workload",
    "db",
    "executor",
    "tries",
    "wall_s",
    "hop_median_s",
    "hop_p95_s",
    "cpu_s_per_try",
    "machine",
}


def _bench(*args: str) -> dict[str, Any]:
    """`python -m bench ARGS --json`, which must succeed: its report."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", *args, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"bench failed:\n{done.stdout}\n{done.stderr}"
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_bench_w2_smoke_reports_every_key() -> None:
    report = _bench("run", "W2", "--db", "sqlite", "--size", "5")
    assert report.keys() >= KEYS, f"missing keys: {sorted(KEYS - report.keys())}"
    assert (report["workload"], report["db"], report["executor"]) == ("W2", "sqlite", "local")
    assert report["tries"] == 5
    assert report["wall_s"] > 0
    assert report["hop_median_s"] <= report["hop_p95_s"]
    assert set(report["machine"]) == {"cpus", "python", "platform"}


def test_bench_w4_smoke_reports_throughput_and_latency() -> None:
    report = _bench("run", "W4", "--db", "sqlite", "--size", "2")
    assert (report["workload"], report["executor"], report["runs"]) == ("W4", "local", 2)
    assert report["tries"] == 100
    assert report["tries_per_s"] > 0
    p50, p95, p99 = (report[f"ready_to_running_{p}_s"] for p in ("p50", "p95", "p99"))
    assert 0 <= p50 <= p95 <= p99


def test_bench_refuses_celery_on_sqlite() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "run", "W1", "--db", "sqlite", "--executor", "celery"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "--executor celery needs --db postgresql" in done.stderr


def test_bench_floor_reports_the_isolation_cost_and_the_ceiling_it_sets() -> None:
    report = _bench("floor", "--tries", "20")
    assert report["python_loop_s"] > 0
    assert report["fork_exit_ms_bare"] > 0
    assert report["fork_exit_ms_warm"] > 0
    assert report["try_path_ms"] > 0
    assert report["tries_per_s_ceiling"] == round(report["cpus"] * 1000 / report["try_path_ms"])
