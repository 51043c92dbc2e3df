"""Running one workload against a fresh drayman: setup, trigger, wait, measure, tear down.

The services (database, broker, scheduler and workers) come from `bench.services`, the CPU and
memory accounting from `bench.processes`, the numbers from `bench.results`. The bench process
triggers through the store, as `drayman dags trigger` does, rings the scheduler's doorbell,
and polls the database every `POLL_S` until every run finished.
"""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench.errors import BenchError
from bench.processes import (
    cmdline,
    db_server_cpu_s,
    descendants,
    own_cpu_s,
    pss_mb,
    start_profiler,
    stop_profiler,
    system_busy_cpu_s,
    tree_cpu_by_role,
    tree_cpu_s,
    wait_idle,
)
from bench.results import RunResult, machine, read_result
from bench.services import (
    Server,
    broker,
    database,
    drayman_bin,
    drayman_env,
    migrate,
    start,
    wait_ready,
    wait_workers,
)
from bench.workloads import Workload
from drayman.config import Settings

__all__ = ["measure_memory", "measure_version", "run_workload"]

POLL_S = 0.02  # how often the bench polls the database for the runs' states
WARMUP_S = 1.0  # after the scheduler is ready: the local executor starts its warm workers


def run_workload(
    workload: Workload,
    *,
    db: str,
    size: int,
    parallelism: int,
    timeout_s: float = 120.0,
    keep: bool = False,
    profile: Path | None = None,
    executor: str = "local",
    workers: int = 1,
    worker_concurrency: int = 8,
    remote_poll_s: float | None = None,
) -> RunResult:
    """Run `workload` once against a fresh setup and measure it.

    With `executor="celery"`: the scheduler sends tries through Redis to `workers`
    `drayman worker --concurrency WORKER_CONCURRENCY` subprocesses (PostgreSQL only).
    """
    if executor == "celery" and db != "postgresql":
        raise BenchError(
            f"--executor celery needs --db postgresql: scheduler and workers are separate "
            f"processes sharing one database, which {db} is not for"
        )
    with (
        tempfile.TemporaryDirectory(prefix=f"drayman-bench-{workload.name}-") as tmp,
        broker(executor) as broker_url,
    ):
        home, dags = Path(tmp) / "home", Path(tmp) / "dags"
        home.mkdir()
        workload.write_dags(dags, size)
        with database(db, home) as url:
            env = drayman_env(
                home,
                dags,
                url,
                parallelism,
                executor=executor,
                broker_url=broker_url,
                remote_poll_s=remote_poll_s,
                extra=workload.env,
            )
            migrate(env)
            server = start(["scheduler"], env, home / "scheduler.log")
            pool: list[Server] = []
            try:
                if executor == "celery":
                    for index in range(workers):
                        # each worker its own home (bundle cache, logs), as on its own host
                        worker_home = Path(tmp) / f"worker-{index + 1}"
                        worker_home.mkdir()
                        pool.append(
                            start(
                                ["worker", "--concurrency", str(worker_concurrency)],
                                {**env, "DRAYMAN_HOME": str(worker_home)},
                                home / f"worker-{index + 1}.log",
                            )
                        )
                result = _measure(
                    workload,
                    server,
                    pool,
                    home,
                    url,
                    db=db,
                    size=size,
                    parallelism=parallelism,
                    timeout_s=timeout_s,
                    profile=profile,
                )
            except BaseException:
                for member in [server, *pool]:
                    member.stop(10)
                raise
            code = server.stop()
            for member in pool:
                member.stop()
            if code != 0:
                print(
                    f"bench: warning: the scheduler exited {code} after SIGTERM:\n{server.tail()}",
                    file=sys.stderr,
                )
            if keep:
                print(f"bench: scheduler log:\n{server.tail(200)}", file=sys.stderr)
        result.executor = executor
        if executor == "celery":
            result.workers, result.worker_concurrency = workers, worker_concurrency
            result.remote_poll_s = (
                remote_poll_s if remote_poll_s is not None else Settings().remote_poll_s
            )
        return result


def _measure(
    workload: Workload,
    server: Server,
    pool: list[Server],
    home: Path,
    url: str,
    *,
    db: str,
    size: int,
    parallelism: int,
    timeout_s: float,
    profile: Path | None,
) -> RunResult:
    from drayman import run_creation
    from drayman.store.engine import Store
    from drayman.wakeup import ring

    dag_ids = workload.dag_ids(size)
    triggers = workload.triggers(size)
    store = Store(url)
    profilers: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        wait_ready(store, server, home, dag_ids)
        wait_workers(store, pool)
        time.sleep(WARMUP_S)
        for member in [server, *pool]:
            wait_idle(member.pid)
        if profile is not None:
            outs = [profile] + [
                profile.with_name(f"{profile.stem}-worker{i + 1}{profile.suffix}")
                for i in range(len(pool))
            ]
            profilers = [
                (start_profiler(member.pid, out), out)
                for member, out in zip([server, *pool], outs, strict=True)
            ]
            time.sleep(1.0)  # py-spy attaches to every process of the tree before the trigger
        roles_before = _cpu_by_role(server, pool)
        db_before = db_server_cpu_s() if db == "postgresql" else 0.0
        busy_before, own_before = system_busy_cpu_s(), own_cpu_s()
        triggered_at = datetime.now(UTC)
        with store.begin() as conn:
            for index, dag_id in enumerate(triggers):
                # the same DAG several times (W4): distinct run ids and logical dates
                repeated = len(triggers) > len(dag_ids)
                run_creation.trigger(
                    conn,
                    dag_id,
                    conf=None,
                    triggered_by="bench",
                    now=triggered_at,
                    run_id=f"bench__{index:05d}" if repeated else None,
                    logical_date=triggered_at + timedelta(microseconds=index) if repeated else None,
                )
        ring(home)
        _wait_finished(store, [server, *pool], dag_ids, len(triggers), timeout_s)
        roles_after = _cpu_by_role(server, pool)
        by_role = {role: round(roles_after[role] - roles_before[role], 3) for role in roles_after}
        # celery_workers is the sum of the worker_* roles that break it down
        cpu_s = sum(v for k, v in by_role.items() if not k.startswith("worker_"))
        db_cpu_s = db_server_cpu_s() - db_before if db == "postgresql" else None
        busy_s = system_busy_cpu_s() - busy_before
        own_s = own_cpu_s() - own_before
        result = read_result(
            store, workload, dag_ids, triggered_at, cpu_s, db=db, size=size, parallelism=parallelism
        )
        result.db_server_cpu_s = None if db_cpu_s is None else round(db_cpu_s, 3)
        result.cpu_s_by_role = by_role
        other = busy_s - cpu_s - own_s - (db_cpu_s or 0.0)
        result.other_cpu_s = round(max(other, 0.0), 3)
        return result
    finally:
        for profiler, out in profilers:
            stop_profiler(profiler, out)
        store.dispose()


def _cpu_by_role(server: Server, pool: list[Server]) -> dict[str, float]:
    """The scheduler tree's CPU by role; with Celery, every worker tree as `celery_workers`."""
    roles = tree_cpu_by_role(server.pid)
    if pool:
        roles["celery_workers"] = sum(tree_cpu_s(member.pid) for member in pool)
        # a worker's tree has the scheduler's shape: its main process (Celery and the
        # engine), the forkserver, the warm processes and the try children
        for member in pool:
            for role, seconds in tree_cpu_by_role(member.pid).items():
                key = "worker_" + {"scheduler": "main", "workers": "warm"}.get(role, role)
                roles[key] = roles.get(key, 0.0) + seconds
    return roles


def _wait_finished(
    store: Any, servers: list[Server], dag_ids: list[str], runs: int, timeout_s: float
) -> None:
    """Poll every POLL_S until all `runs` succeeded; fail on a failed run or the timeout."""
    from drayman.store.schema import dag_run

    deadline = time.monotonic() + timeout_s
    query = (
        select(dag_run.c.state, func.count())
        .where(dag_run.c.dag_id.in_(dag_ids))
        .group_by(dag_run.c.state)
    )
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        with store.read() as conn:
            counts = {state: n for state, n in conn.execute(query)}
        if counts.get("failed"):
            raise BenchError(f"{counts['failed']} run(s) failed: {_failures(store, dag_ids)}")
        if counts.get("success", 0) == runs:
            return
        for server in servers:
            server.check_alive()
        time.sleep(POLL_S)
    raise BenchError(
        f"the runs did not finish within {timeout_s:.0f}s (run states: {counts}); "
        f"scheduler output:\n{servers[0].tail()}"
    )


def _failures(store: Any, dag_ids: list[str]) -> str:
    from drayman.store.schema import dag_run, task_instance, task_try

    with store.read() as conn:
        rows = conn.execute(
            select(dag_run.c.dag_id, task_instance.c.task_id, task_try.c.error)
            .join(task_instance, task_instance.c.dag_run_id == dag_run.c.id)
            .join(task_try, task_try.c.task_instance_id == task_instance.c.id)
            .where(dag_run.c.dag_id.in_(dag_ids), task_try.c.state == "failed")
            .limit(5)
        ).all()
    return "; ".join(f"{r.dag_id}.{r.task_id}: {r.error}" for r in rows) or "no failed try"


# -- memory and startup -----------------------------------------------------------------------


def measure_memory(*, settle_s: float = 10.0, timeout_s: float = 120.0) -> dict[str, Any]:
    """PSS of an idle `drayman standalone` with the examples, summed over its process tree."""
    from drayman.store.engine import Store
    from drayman.store.schema import dag_run

    with tempfile.TemporaryDirectory(prefix="drayman-bench-memory-") as tmp:
        home = Path(tmp) / "home"
        env = {"DRAYMAN_HOME": str(home), "DRAYMAN_DAGS_FOLDER": str(Path(tmp) / "no-dags")}
        home.mkdir()
        started = time.monotonic()
        server = start(["standalone", "--examples"], env, Path(tmp) / "standalone.log")
        try:
            deadline = started + timeout_s
            store = Store(f"sqlite:///{(home / 'drayman.db').resolve()}")
            states: dict[str, int] = {}
            while time.monotonic() < deadline:
                server.check_alive()
                with contextlib.suppress(Exception), store.read() as conn:
                    states = dict(
                        conn.execute(
                            select(dag_run.c.state, func.count()).group_by(dag_run.c.state)
                        ).all()
                    )
                busy = states.get("queued", 0) + states.get("running", 0)
                if time.monotonic() - started >= settle_s and states and not busy:
                    break
                time.sleep(0.2)
            else:
                raise BenchError(
                    f"the example runs did not finish within {timeout_s:.0f}s "
                    f"(run states: {states}); output:\n{server.tail()}"
                )
            store.dispose()
            wait_idle(server.pid)
            processes: list[dict[str, Any]] = []
            for pid in [server.pid, *descendants(server.pid)]:
                pss = pss_mb(pid)
                if pss is not None:
                    processes.append({"pid": pid, "cmd": cmdline(pid), "pss_mb": round(pss, 1)})
        except BaseException:
            server.stop(10)
            raise
        code = server.stop()
        return {
            "pss_mb_total": round(sum(p["pss_mb"] for p in processes), 1),
            "processes": processes,
            "runs": states,
            "exit_code": code,
            "exit_ok": code == 0,
            "machine": machine(),
        }


def measure_version(runs: int = 20) -> dict[str, Any]:
    """Wall time of `drayman --version` (the real entry point), after one warm-up run."""
    command = [str(drayman_bin()), "--version"]
    subprocess.run(command, capture_output=True, check=True)
    times = []
    for _ in range(runs):
        begin = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        times.append(time.perf_counter() - begin)
    return {
        "command": " ".join(command),
        "runs": runs,
        "median_s": round(statistics.median(times), 4),
        "min_s": round(min(times), 4),
        "max_s": round(max(times), 4),
        "machine": machine(),
    }
