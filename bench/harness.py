"""Running one workload against a fresh drayman: setup, trigger, wait, measure, tear down.

Each run gets its own DRAYMAN_HOME and DAG folder in a temp dir, a fresh database (a SQLite
file under the home, or a throwaway PostgreSQL database that is dropped afterwards), and a real
`drayman scheduler` subprocess with the local executor, or with the Celery executor plus
`drayman worker` subprocesses on a Redis database that is flushed before and after. The bench
process triggers through the store, exactly as `drayman runs trigger` does, rings the
scheduler's doorbell, and polls the database every `POLL_S` until every run finished.

Process CPU is read from /proc: utime + stime of the scheduler and every live descendant, plus
cutime + cstime, which hold the CPU of descendants that have exited and were reaped.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select, text

from bench.workloads import Workload
from drayman.config import Settings

PG_ADMIN_URL = os.environ.get(
    "DRAYMAN_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
BROKER_URL = os.environ.get("DRAYMAN_BENCH_BROKER_URL", "redis://127.0.0.1:6379/13")
POLL_S = 0.02  # how often the bench polls the database for the runs' states
WARMUP_S = 1.0  # after the scheduler is ready: the local executor starts its warm workers
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A benchmark could not be run or did not finish: the message says which and why."""


def drayman_bin() -> Path:
    """The real `drayman` entry point next to this Python (not a pyenv shim on PATH)."""
    path = Path(sys.executable).parent / "drayman"
    if not path.exists():
        raise BenchError(f"{path} does not exist: pip install -e . in this Python first")
    return path


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


# -- /proc ------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # the command name (field 2) is in parentheses and may hold spaces: split after it
    return raw[raw.rindex(")") + 2 :].split()


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (children, their children, ...)."""
    return [child for child, _ in _tree(pid)[1:]]


def _tree(pid: int) -> list[tuple[int, int]]:
    """(pid, depth) of `pid` (depth 0) and every live descendant."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))  # fields[1] is ppid
    found, todo = [(pid, 0)], [(pid, 0)]
    while todo:
        parent, depth = todo.pop()
        for child in children.get(parent, []):
            found.append((child, depth + 1))
            todo.append((child, depth + 1))
    return found


# The local executor's tree: scheduler -> forkserver (and resource tracker) -> workers -> one
# forked child per try. A process's own CPU counts for its level; the CPU of its reaped
# children (cutime + cstime) for the level below.
ROLE_BY_DEPTH = ("scheduler", "forkserver", "workers", "try_children")


def tree_cpu_by_role(pid: int) -> dict[str, float]:
    """CPU seconds used so far by `pid` and all its descendants, living or reaped, by role."""
    ticks = dict.fromkeys(ROLE_BY_DEPTH, 0)
    for member, depth in _tree(pid):
        fields = _stat_fields(member)
        if fields is None:
            continue
        # after the ppid shift: [11..14] are utime, stime, cutime, cstime
        own, reaped = int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])
        ticks[ROLE_BY_DEPTH[min(depth, 3)]] += own
        ticks[ROLE_BY_DEPTH[min(depth + 1, 3)]] += reaped
    return {role: n / TICKS_PER_S for role, n in ticks.items()}


def tree_cpu_s(pid: int) -> float:
    """CPU seconds used so far by `pid` and all its descendants, living or reaped."""
    return sum(tree_cpu_by_role(pid).values())


def db_server_cpu_s() -> float:
    """CPU seconds used so far by every PostgreSQL server process on this machine.

    The database's own work is not in the scheduler's process tree; with other clients on the
    same server this over-counts, so it is a diagnostic, not a result.
    """
    ticks = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                comm = Path(f"/proc/{entry}/comm").read_text().strip()
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
            fields = _stat_fields(int(entry)) if comm.startswith("postgres") else None
            if fields is not None:
                ticks += sum(int(value) for value in fields[11:13])  # utime, stime
    return ticks / TICKS_PER_S


def system_busy_cpu_s() -> float:
    """Non-idle CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle and iowait
    return (sum(values[:8]) - idle) / TICKS_PER_S


def own_cpu_s() -> float:
    """CPU seconds of this bench process so far."""
    times = os.times()
    return times.user + times.system


def pss_mb(pid: int) -> float | None:
    """Proportional set size of one process in MiB, from /proc/PID/smaps_rollup."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def cmdline(pid: int, width: int = 120) -> str:
    """The command line of `pid`, shortened to `width` characters."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return ""
    text_ = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    return text_ if len(text_) <= width else text_[: width - 3] + "..."


def wait_idle(
    pid: int, *, window_s: float = 0.3, max_cpu_s: float = 0.02, timeout_s: float = 15.0
) -> None:
    """Wait until the process tree used at most `max_cpu_s` CPU over one `window_s`."""
    deadline = time.monotonic() + timeout_s
    before = tree_cpu_s(pid)
    while time.monotonic() < deadline:
        time.sleep(window_s)
        after = tree_cpu_s(pid)
        if after - before <= max_cpu_s:
            return
        before = after
    print(f"bench: warning: pid {pid} never went idle within {timeout_s:.0f}s", file=sys.stderr)


# -- databases --------------------------------------------------------------------------------


@contextlib.contextmanager
def database(kind: str, home: Path) -> Iterator[str]:
    """A fresh database URL of `kind` ("sqlite" or "postgresql"), removed afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{(home / 'drayman.db').resolve()}"
        return
    if kind != "postgresql":
        raise BenchError(f"--db {kind!r}: use sqlite or postgresql")
    name = f"drayman_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        raise BenchError(f"cannot create a database on {PG_ADMIN_URL}: {exc}") from exc
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# -- the scheduler under test -----------------------------------------------------------------


@dataclass
class Server:
    """A `drayman scheduler` or `drayman standalone` subprocess and where its output goes."""

    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise BenchError(
                f"drayman (pid {self.pid}) exited with {self.process.returncode}; "
                f"its output:\n{self.tail()}"
            )

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no output)"

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, then wait; SIGKILL after `timeout_s`. Returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start(args: list[str], env: dict[str, str], log_path: Path) -> Server:
    """Start `drayman ARGS` with `env` added to this environment, output to `log_path`."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(drayman_bin()), *args],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return Server(process, log_path)


def drayman_env(
    home: Path,
    dags: Path,
    url: str,
    parallelism: int,
    *,
    executor: str = "local",
    broker_url: str | None = None,
    remote_poll_s: float | None = None,
    extra: tuple[tuple[str, str], ...] = (),
) -> dict[str, str]:
    """The DRAYMAN_* settings of the scheduler (and the Celery workers) under test."""
    env = {
        "DRAYMAN_HOME": str(home),
        "DRAYMAN_DAGS_FOLDER": str(dags),
        "DRAYMAN_DATABASE_URL": url,
        "DRAYMAN_EXECUTOR": executor,
        "DRAYMAN_PARALLELISM": str(parallelism),
        **dict(extra),
    }
    if broker_url is not None:
        env["DRAYMAN_BROKER_URL"] = broker_url
    if remote_poll_s is not None:
        env["DRAYMAN_REMOTE_POLL_S"] = str(remote_poll_s)
    return env


@contextlib.contextmanager
def broker(executor: str) -> Iterator[str | None]:
    """The broker URL for `executor` (None for local): a Redis database flushed around use."""
    if executor == "local":
        yield None
        return
    if executor != "celery":
        raise BenchError(f"--executor {executor!r}: use local or celery")
    import redis

    client = redis.Redis.from_url(BROKER_URL)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        client.close()
        raise BenchError(f"cannot flush the broker database {BROKER_URL}: {exc}") from exc
    try:
        yield BROKER_URL
    finally:
        with contextlib.suppress(redis.RedisError):
            client.flushdb()
        client.close()


def migrate(env: dict[str, str]) -> None:
    """`drayman db migrate`, failing loudly with its output."""
    done = subprocess.run(
        [str(drayman_bin()), "db", "migrate"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(
            f"drayman db migrate failed ({done.returncode}):\n{done.stdout}{done.stderr}"
        )


# -- one run of one workload ------------------------------------------------------------------


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
    from drayman.scheduler import runs as run_creation
    from drayman.scheduler.wakeup import ring
    from drayman.store.engine import Store

    dag_ids = workload.dag_ids(size)
    triggers = workload.triggers(size)
    store = Store(url)
    profilers: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        _wait_ready(store, server, home, dag_ids)
        _wait_workers(store, pool)
        time.sleep(WARMUP_S)
        for member in [server, *pool]:
            wait_idle(member.pid)
        if profile is not None:
            outs = [profile] + [
                profile.with_name(f"{profile.stem}-worker{i + 1}{profile.suffix}")
                for i in range(len(pool))
            ]
            profilers = [
                (_start_profiler(member.pid, out), out)
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
        result = _result(
            store, workload, dag_ids, triggered_at, cpu_s, db=db, size=size, parallelism=parallelism
        )
        result.db_server_cpu_s = None if db_cpu_s is None else round(db_cpu_s, 3)
        result.cpu_s_by_role = by_role
        other = busy_s - cpu_s - own_s - (db_cpu_s or 0.0)
        result.other_cpu_s = round(max(other, 0.0), 3)
        return result
    finally:
        for profiler, out in profilers:
            _stop_profiler(profiler, out)
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


def _wait_workers(store: Any, pool: list[Server], timeout_s: float = 60.0) -> None:
    """Until every Celery worker registered itself as a running worker component."""
    from drayman.store.schema import component

    if not pool:
        return
    pids = [member.pid for member in pool]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for member in pool:
            member.check_alive()
        with contextlib.suppress(Exception), store.read() as conn:
            registered = conn.execute(
                select(func.count())
                .select_from(component)
                .where(
                    component.c.kind == "worker",
                    component.c.pid.in_(pids),
                    component.c.state == "running",
                )
            ).scalar_one()
            if registered == len(pids):
                return
        time.sleep(0.05)
    raise BenchError(
        f"{len(pids)} Celery worker(s) did not register within {timeout_s:.0f}s; "
        f"the first one's output:\n{pool[0].tail()}"
    )


def _start_profiler(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling the scheduler and its descendants into `out` (collapsed stacks)."""
    profiler = subprocess.Popen(
        [
            "py-spy",
            "record",
            "--pid",
            str(pid),
            "--subprocesses",
            "--nonblocking",
            "--rate",
            "250",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return profiler


def _stop_profiler(profiler: subprocess.Popen[bytes], out: Path | None) -> None:
    profiler.send_signal(signal.SIGINT)
    try:
        profiler.wait(30)
    except subprocess.TimeoutExpired:
        profiler.kill()
        profiler.wait()
    print(f"bench: py-spy profile (collapsed stacks) in {out}", file=sys.stderr)


def _wait_ready(
    store: Any, server: Server, home: Path, dag_ids: list[str], timeout_s: float = 60.0
) -> None:
    """Until every DAG is parsed and active and the scheduler registered (doorbell bound)."""
    from drayman.store.schema import component, dag

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        server.check_alive()
        with contextlib.suppress(Exception), store.read() as conn:
            active = conn.execute(
                select(func.count())
                .select_from(dag)
                .where(dag.c.dag_id.in_(dag_ids), dag.c.is_active.is_(True))
            ).scalar_one()
            registered = conn.execute(
                select(func.count())
                .select_from(component)
                .where(
                    component.c.kind == "scheduler",
                    component.c.pid == server.pid,
                    component.c.state == "running",
                )
            ).scalar_one()
            if active == len(dag_ids) and registered and any(home.glob("scheduler-*.sock")):
                return
        time.sleep(0.05)
    raise BenchError(
        f"the scheduler did not parse {len(dag_ids)} DAG(s) within {timeout_s:.0f}s;"
        f" its output:\n{server.tail()}"
    )


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


def _result(
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
        wall_s=_s(run_end - triggered_at),
        cpu_s=round(cpu_s, 3),
        cpu_s_per_try=round(cpu_s / max(len(tries), 1), 4),
        first_start_s=_s(tries[0].start_date - triggered_at),
        queue_to_start_median_s=_s(statistics.median(t.start_date - t.queued_at for t in tries)),
        try_run_median_s=_s(statistics.median(t.end_date - t.start_date for t in tries)),
        last_end_to_run_end_s=_s(run_end - max(t.end_date for t in tries)),
        runs=runs,
    )
    waits = [(t.start_date - t.queued_at).total_seconds() for t in tries]
    result.ready_to_running_p50_s = round(percentile(waits, 50), 4)
    result.ready_to_running_p95_s = round(percentile(waits, 95), 4)
    result.ready_to_running_p99_s = round(percentile(waits, 99), 4)
    result.tries_per_s_wall = round(len(tries) / max(result.wall_s, 1e-9), 1)
    result.tries_per_s = round(_sustained_rate([t.start_date for t in tries]), 1)
    if workload.shape == "chain":
        # a chain runs its tries one after another: in start order, each follows the previous
        hops = [_s(b.start_date - a.end_date) for a, b in itertools.pairwise(tries)]
        result.hop_median_s = round(statistics.median(hops), 4)
        result.hop_p95_s = round(percentile(hops, 95), 4)
        result.hop_max_s = round(max(hops), 4)
    return result


def _sustained_rate(starts: list[datetime]) -> float:
    """Tries started per second between the 5th and the 95th percentile start (the ramp-up
    and the tail left out); for a handful of tries, first to last start."""
    ordered = sorted(starts)
    if len(ordered) < 2:
        return 0.0
    low, high = (int(len(ordered) * 0.05), int(len(ordered) * 0.95) - 1)
    if len(ordered) < 40:
        low, high = 0, len(ordered) - 1
    span = (ordered[high] - ordered[low]).total_seconds()
    return (high - low) / span if span > 0 else 0.0


def _s(delta: timedelta) -> float:
    return round(delta.total_seconds(), 4)


def percentile(values: list[float], pct: float) -> float:
    """The `pct` percentile of `values`, linearly interpolated (numpy's default)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


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
