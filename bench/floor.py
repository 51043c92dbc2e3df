"""What a try costs before any scheduling, database or broker: the floor under W4's figure.

    python -m bench floor [--tries N] [--json]

Every try runs in a process of its own (DESIGN.md), forked from a warm process that has
drayman and the DAG imported (ADR 3). This measures, on this machine:

- `python_loop_s`: a fixed pure-Python loop, a reference for the CPU's speed. It does not
  see everything: on a shared VM, W4 varies by a third from hour to hour while this stays put
  (page faults and context switches suffer from neighbours more than arithmetic does).
- `fork_exit_ms_bare` / `fork_exit_ms_warm`: CPU of one fork whose child exits at once, from a
  bare interpreter and from one holding what a warm process preloads: isolation at its
  cheapest, with no task, log or supervision.
- `try_path_ms`: CPU of one no-op try through the local executor's warm processes (fork,
  supervision, log file, result, outcome message), every process counted, no database.
- `tries_per_s_ceiling`: the machine's cores divided by `try_path_ms`: what no scheduler,
  database or broker on top can exceed.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.micro_runner import (
    DAG_FILE,
    VERSION,
    own_cpu_s,
    wait_outcomes,
    workers_cpu_s,
    workload,
)
from drayman.config import Settings
from drayman.executors.local import LocalExecutor
from drayman.runner.preload import WARM_PROCESS_PRELOAD as PRELOAD

LOOP_ITERATIONS = 5_000_000
FORKS = 300

# Run in a fresh interpreter: fork FORKS times, each child exiting at once; print the CPU
# of the forks in ms per fork (this process's and the reaped children's).
_FORK_PROBE = """
import gc, os, resource, sys
for name in sys.argv[2:]:
    __import__(name)
gc.freeze()
forks = int(sys.argv[1])
before = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
for _ in range(forks):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
after = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
cpu = sum(a.ru_utime + a.ru_stime - b.ru_utime - b.ru_stime for a, b in zip(after, before))
print(cpu / forks * 1000)
"""


def measure_floor(tries: int = 400) -> dict[str, Any]:
    """The figures in the module docstring, as one dict."""
    try_ms = _try_path_ms(tries)
    cpus = os.cpu_count() or 1
    return {
        "python_loop_s": _python_loop_s(),
        "fork_exit_ms_bare": _fork_exit_ms([]),
        "fork_exit_ms_warm": _fork_exit_ms(list(PRELOAD)),
        "try_path_ms": try_ms,
        "tries_per_s_ceiling": round(cpus * 1000 / try_ms),
        "cpus": cpus,
    }


def _python_loop_s() -> float:
    times = []
    for _ in range(3):
        began = time.process_time()
        total = 0
        for i in range(LOOP_ITERATIONS):
            total += i
        times.append(time.process_time() - began)
    return round(statistics.median(times), 3)


def _fork_exit_ms(modules: list[str]) -> float:
    done = subprocess.run(
        [sys.executable, "-c", _FORK_PROBE, str(FORKS), *modules],
        capture_output=True,
        text=True,
        check=True,
    )
    return round(float(done.stdout), 3)


def _try_path_ms(tries: int) -> float:
    """CPU per no-op try through warm processes: the second of two batches (the first warms)."""
    with tempfile.TemporaryDirectory(prefix="drayman-floor-") as tmp:
        home = Path(tmp)
        bundle = home / "bundles" / VERSION
        bundle.mkdir(parents=True)
        (bundle / "dag.py").write_text(DAG_FILE)
        executor = LocalExecutor(Settings(home=home, parallelism=os.cpu_count() or 1))
        executor.start()
        try:
            executor.submit([workload(i) for i in range(tries)])
            wait_outcomes(executor, tries)
            before = own_cpu_s() + workers_cpu_s(executor)
            executor.submit([workload(tries + i) for i in range(tries)])
            wait_outcomes(executor, tries)
            cpu = own_cpu_s() + workers_cpu_s(executor) - before
        finally:
            executor.stop(grace_s=5)
    return round(cpu / tries * 1000, 3)


def floor_text(data: dict[str, Any]) -> str:
    return (
        f"python loop: {data['python_loop_s']:.3f} s; fork+exit CPU: "
        f"{data['fork_exit_ms_bare']:.2f} ms bare, {data['fork_exit_ms_warm']:.2f} ms warm; "
        f"a no-op try through warm processes: {data['try_path_ms']:.2f} ms of CPU, so at most "
        f"{data['tries_per_s_ceiling']} tries/s on {data['cpus']} cores before any scheduler, "
        "database or broker"
    )
