"""Micro-benchmark of the worker side alone: no scheduler, no database.

    python bench/micro_runner.py [--tries 200] [--parallelism 8] [--chain 50]

1. `--tries` independent no-op Python tries submitted at once to a LocalExecutor, right after
   start() ("cold": extra workers start and import the DAG file) and again ("warm"): wall time
   from submit to the last outcome, and CPU per try summed over every process involved (this
   one, the workers, and the try processes the workers forked and reaped; "cold" misses the
   CPU of workers that did not exist yet when it began).
2. A chain of `--chain` tries, each submitted when the previous outcome arrives: the latency
   of one hop as the scheduler would see it (minus its own database writes).
"""

from __future__ import annotations

import argparse
import os
import resource
import select
import sys
import tempfile
import time
from pathlib import Path

from drayman.config import Settings
from drayman.executors.local import LocalExecutor
from drayman.workloads import RunContextData, TryOutcome, TryWorkload, log_relpath

VERSION = "be7c4" + "0" * 59
DAG_FILE = """
from drayman import DAG, task

with DAG("bench"):

    @task
    def noop():
        return None

    noop()
"""


def workload(try_id: int) -> TryWorkload:
    run = RunContextData(
        dag_id="bench",
        run_id="manual__2024-01-01T00:00:00+00:00",
        run_type="manual",
        logical_date="2024-01-01T00:00:00+00:00",
        data_interval_start="2024-01-01T00:00:00+00:00",
        data_interval_end="2024-01-01T00:00:00+00:00",
        timezone="UTC",
        bundle_version=VERSION,
    )
    return TryWorkload(
        try_id=try_id,
        ti_id=try_id,
        task_id="noop",
        map_index=-1,
        try_number=1,
        max_tries=1,
        fileloc="dag.py",
        run=run,
        # one run of many tasks: one log folder per task, as in the real thing
        log_path=log_relpath("bench", run.run_id, f"task_{try_id}", -1, 1),
    )


def process_cpu_s(pid: int) -> float:
    """CPU seconds of `pid` and of the children it has reaped (the tries it forked)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def workers_cpu_s(executor: LocalExecutor) -> float:
    return sum(
        process_cpu_s(w.process.pid)
        for w in executor.pool._workers.values()
        if w.process.pid is not None
    )


def pss_mb(pid: int) -> float:
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except (FileNotFoundError, PermissionError):
        return 0.0
    line = next(row for row in rollup.splitlines() if row.startswith("Pss:"))
    return int(line.split()[1]) / 1024


def memory(executor: LocalExecutor) -> None:
    """PSS of the processes the executor added: its forkserver and workers."""
    from multiprocessing import forkserver, resource_tracker

    workers = [w.process.pid for w in executor.pool._workers.values() if w.process.pid]
    server = forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]
    tracker = resource_tracker._resource_tracker._pid  # type: ignore[attr-defined]
    total = sum(pss_mb(pid) for pid in workers)
    print(
        f"memory (PSS): {len(workers)} workers {total:.1f} MB, forkserver "
        f"{pss_mb(server or 0):.1f} MB, resource tracker {pss_mb(tracker or 0):.1f} MB, "
        f"this process {pss_mb(os.getpid()):.1f} MB"
    )


def wait_outcomes(executor: LocalExecutor, count: int) -> list[TryOutcome]:
    fd = executor.fileno()
    assert fd is not None
    found: list[TryOutcome] = []
    while len(found) < count:
        select.select([fd], [], [], 10)
        found += [e for e in executor.events() if isinstance(e, TryOutcome)]
    return found


def independent(executor: LocalExecutor, tries: int, first: int, label: str) -> None:
    own_before, workers_before = own_cpu_s(), workers_cpu_s(executor)
    began = time.perf_counter()
    executor.submit([workload(first + i) for i in range(tries)])
    outcomes = wait_outcomes(executor, tries)
    wall = time.perf_counter() - began
    own = own_cpu_s() - own_before
    cpu = own + workers_cpu_s(executor) - workers_before
    failed = [o for o in outcomes if not o.succeeded]
    print(f"{tries} independent no-op tries, {label}: {wall:.3f} s wall, {tries / wall:.0f}/s")
    print(
        f"  CPU {cpu:.3f} s in all processes = {cpu / tries * 1000:.2f} ms per try "
        f"({own / tries * 1000:.2f} ms of it in the executor's own process)"
    )
    if failed:
        print(f"  {len(failed)} FAILED, e.g. {failed[0].error}")


def chain(executor: LocalExecutor, hops: int) -> None:
    latencies = []
    for i in range(hops):
        began = time.perf_counter()
        executor.submit([workload(100_000 + i)])
        wait_outcomes(executor, 1)
        latencies.append(time.perf_counter() - began)
    latencies.sort()
    median = latencies[len(latencies) // 2] * 1000
    p95 = latencies[int(len(latencies) * 0.95)] * 1000
    print(f"chain of {hops}: {median:.2f} ms median per hop, p95 {p95:.2f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=200)
    parser.add_argument("--parallelism", type=int, default=8)
    parser.add_argument("--chain", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="drayman-bench-") as tmp:
        home = Path(tmp)
        bundle = home / "bundles" / VERSION
        bundle.mkdir(parents=True)
        (bundle / "dag.py").write_text(DAG_FILE)
        settings = Settings(home=home, parallelism=args.parallelism)
        executor = LocalExecutor(settings)
        started = time.perf_counter()
        executor.start()
        print(f"start(): {(time.perf_counter() - started) * 1000:.1f} ms")
        try:
            # cold: workers beyond the warm ones start, each imports the DAG file once
            independent(executor, args.tries, 0, "cold")
            independent(executor, args.tries, args.tries, "warm")
            chain(executor, args.chain)
            memory(executor)
        finally:
            executor.stop(grace_s=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
