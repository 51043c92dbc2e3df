"""What one run of a workload measured (`RunResult`), read back from the database it ran on."""

from __future__ import annotations

import itertools
import os
import platform
import statistics
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from bench.stats import percentile, seconds, sustained_rate
from bench.workloads import Workload


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


@dataclass
class RunResult:
    """What one run of a workload measured. Times in seconds."""

    workload: str
    db: str
    executor: str
    size: int
    parallelism: int
    tries: int
    wall_s: float  # trigger to the last run's end_date
    cpu_s_per_try: float  # scheduler process tree (and Celery workers) CPU / tries
    cpu_s: float
    runs: int = 1
    # sustained rate: tries started between the 5th and 95th percentile start, per second
    tries_per_s: float = 0.0
    tries_per_s_wall: float = 0.0  # tries / wall_s
    # "ready to running": a try's start_date minus its queued_at (when the scheduler queued it)
    ready_to_running_p50_s: float = 0.0
    ready_to_running_p95_s: float = 0.0
    ready_to_running_p99_s: float = 0.0
    remote_poll_s: float | None = None  # celery: DRAYMAN_REMOTE_POLL_S (None: the default)
    workers: int = 0  # celery: `drayman worker` processes
    worker_concurrency: int = 0  # celery: --concurrency of each
    hop_median_s: float | None = None  # W2 only
    hop_p95_s: float | None = None
    hop_max_s: float | None = None
    first_start_s: float = 0.0  # trigger to the first try's start
    queue_to_start_median_s: float = 0.0  # a try's start minus its queued_at
    try_run_median_s: float = 0.0  # a try's end minus its start
    last_end_to_run_end_s: float = 0.0  # the last try's end to the last run's end_date
    cpu_s_by_role: dict[str, float] = field(default_factory=dict)  # see ROLE_BY_DEPTH
    db_server_cpu_s: float | None = None  # PostgreSQL only: every server process's CPU
    # everything else the machine did meanwhile (other users, tests): a noisy run shows here
    other_cpu_s: float = 0.0
    machine: dict[str, Any] = field(default_factory=machine)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if data["db_server_cpu_s"] is None:
            data.pop("db_server_cpu_s")
        if data["executor"] == "local":
            for key in ("remote_poll_s", "workers", "worker_concurrency"):
                data.pop(key)
        if data["hop_median_s"] is None:
            for key in ("hop_median_s", "hop_p95_s", "hop_max_s"):
                data.pop(key)
        return data


def read_result(
    store: Any,
    workload: Workload,
    dag_ids: list[str],
    triggered_at: datetime,
    cpu_s: float,
    *,
    db: str,
    size: int,
    parallelism: int,
) -> RunResult:
    from drayman.store.schema import dag_run, task_instance, task_try

    with store.read() as conn:
        runs = conn.execute(
            select(func.count()).select_from(dag_run).where(dag_run.c.dag_id.in_(dag_ids))
        ).scalar_one()
        run_end = conn.execute(
            select(func.max(dag_run.c.end_date)).where(dag_run.c.dag_id.in_(dag_ids))
        ).scalar_one()
        tries = conn.execute(
            select(task_try.c.queued_at, task_try.c.start_date, task_try.c.end_date)
            .join(task_instance, task_instance.c.id == task_try.c.task_instance_id)
            .join(dag_run, dag_run.c.id == task_instance.c.dag_run_id)
            .where(dag_run.c.dag_id.in_(dag_ids))
            .order_by(task_try.c.start_date)
        ).all()
    if len(tries) != workload.tries(size):
        print(
            f"bench: warning: {len(tries)} tries, expected {workload.tries(size)}", file=sys.stderr
        )
    result = RunResult(
        workload=workload.name,
        db=db,
        executor="local",
        size=size,
        parallelism=parallelism,
        tries=len(tries),
        wall_s=seconds(run_end - triggered_at),
        cpu_s=round(cpu_s, 3),
        cpu_s_per_try=round(cpu_s / max(len(tries), 1), 4),
        first_start_s=seconds(tries[0].start_date - triggered_at),
        queue_to_start_median_s=seconds(
            statistics.median(t.start_date - t.queued_at for t in tries)
        ),
        try_run_median_s=seconds(statistics.median(t.end_date - t.start_date for t in tries)),
        last_end_to_run_end_s=seconds(run_end - max(t.end_date for t in tries)),
        runs=runs,
    )
    waits = [(t.start_date - t.queued_at).total_seconds() for t in tries]
    result.ready_to_running_p50_s = round(percentile(waits, 50), 4)
    result.ready_to_running_p95_s = round(percentile(waits, 95), 4)
    result.ready_to_running_p99_s = round(percentile(waits, 99), 4)
    result.tries_per_s_wall = round(len(tries) / max(result.wall_s, 1e-9), 1)
    result.tries_per_s = round(sustained_rate([t.start_date for t in tries]), 1)
    if workload.shape == "chain":
        # a chain runs its tries one after another: in start order, each follows the previous
        hops = [seconds(b.start_date - a.end_date) for a, b in itertools.pairwise(tries)]
        result.hop_median_s = round(statistics.median(hops), 4)
        result.hop_p95_s = round(percentile(hops, 95), 4)
        result.hop_max_s = round(max(hops), 4)
    return result
