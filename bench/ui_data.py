"""The UI benchmark's database: ~1,000,000 tries of 500 DAGs on PostgreSQL, built once, reused.

    python -m bench.ui_data [--scale 1.0] [--seed 4] [--rebuild] [--database-url URL]

Without `--database-url` the database is `drayman_bench_ui_v<VERSION>` (a suffix for another
scale) on `DRAYMAN_BENCH_PG_URL`'s server. It is reused while its marker (the table
`drayman_bench.marker`, outside drayman's schema) says a build of this generator version, scale
and seed completed; otherwise, or with `--rebuild`, it is dropped and built again.

How a build goes, and why it is fast and faithful:
- the DAG files are real (`ui_history.DagPlan.source`), packed with drayman's own `pack`,
  parsed by drayman's own parser and stored by `store.bundles` / `store.dags`, as
  `drayman scheduler` publishes a folder: one bundle, one deploy, 500 serialized DAGs;
- runs, task instances and tries (`ui_history.history`) go in by COPY with their ids, in
  creation order, foreign-key triggers off for the load (`session_replication_role`);
- log chunks (`store.logs.append_chunks`), the workers (`component`) and each DAG's next run
  (`store.dags.set_next_run`) go through drayman's store functions;
- VACUUM ANALYZE last, so the planner and index-only scans see the data as in production.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import create_engine, func, select, text, update

from bench import ui_history as hist
from drayman.bundles.archive import pack
from drayman.dag_processor.parser import parse_bundle
from drayman.spec import DagSpec
from drayman.store import bundles as bundle_store
from drayman.store import logs as log_store
from drayman.store import runs as run_store
from drayman.store import try_history
from drayman.store.dags import NextRun, record_parse, set_next_run
from drayman.store.engine import Store
from drayman.store.schema import component, dag
from drayman.timetables import RunInfo, parse_schedule
from drayman.workloads import log_relpath

GENERATOR_VERSION = 1
PG_ADMIN_URL = os.environ.get(
    "DRAYMAN_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
CHUNK_CHARS = 64 * 1024  # what the log shipper stores per chunk at most (ADR 7)
BIG_LOG_BYTES = 8 * 1024 * 1024
LOGGED_BIG_DAG_RUNS = 3  # the big DAG's newest runs get a log for every try
COPY_EVERY_TIS = 50_000
DEPLOYER = "bench@drayman-ui"


class BuildError(Exception):
    """The benchmark database could not be built: the message says why."""


@dataclass(frozen=True)
class Targets:
    """What the UI benchmark opens: the pages with the most to show."""

    big_dag_id: str  # the grid: 100 tasks x the latest runs
    gantt_dag_id: str
    gantt_run_id: str  # a finished 200-task run with retries
    big_log_try_id: int  # a try with a log of several MB


@dataclass(frozen=True)
class Built:
    """A ready benchmark database."""

    url: str
    reused: bool
    targets: Targets
    summary: dict[str, Any]


# ---------------------------------------------------------------- create or reuse


def database_name(scale: float) -> str:
    suffix = "" if scale == 1 else "_s" + f"{scale:g}".replace(".", "_").replace("-", "m")
    return f"drayman_bench_ui_v{GENERATOR_VERSION}{suffix}"


def ensure(
    *,
    scale: float = 1.0,
    seed: int = 4,
    rebuild: bool = False,
    admin_url: str = PG_ADMIN_URL,
    name: str | None = None,
) -> Built:
    """The benchmark database for `scale` and `seed`: reused when complete, else built.

    `name` (default `database_name(scale)`) lets a test use a database of its own.
    """
    name = name or database_name(scale)
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).first()
            marker = read_marker(url) if exists and not rebuild else None
            if marker is not None and _matches(marker, scale, seed):
                _migrate(url)  # a newer drayman may add indexes: cheap next to a build
                _log(f"reusing {name} (built {marker['completed_at']})")
                return Built(url, True, Targets(**marker["targets"]), marker["summary"])
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        if isinstance(exc, BuildError):
            raise
        raise BuildError(f"cannot create {name} on {admin_url}: {exc}") from exc
    finally:
        admin.dispose()
    targets, summary = build(url, scale=scale, seed=seed)
    return Built(url, False, targets, summary)


def _migrate(url: str) -> None:
    store = Store(url)
    try:
        store.migrate()
    finally:
        store.dispose()


def _matches(marker: dict[str, Any], scale: float, seed: int) -> bool:
    return (marker["generator_version"], marker["scale"], marker["seed"]) == (
        GENERATOR_VERSION,
        scale,
        seed,
    )


def read_marker(url: str) -> dict[str, Any] | None:
    """The marker of a completed build in the database at `url`, or None."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT document FROM drayman_bench.marker"
                    " WHERE to_regclass('drayman_bench.marker') IS NOT NULL"
                )
            ).first()
    except Exception:  # no marker table: an unfinished or foreign database
        return None
    finally:
        engine.dispose()
    return None if row is None else dict(json.loads(row[0]))


# ---------------------------------------------------------------- one build


def build(url: str, *, scale: float = 1.0, seed: int = 4) -> tuple[Targets, dict[str, Any]]:
    """Fill the empty database at `url` (migrated here) with the history of `scale`, `seed`."""
    started = time.monotonic()
    store = Store(url)
    try:
        store.migrate()
        plans = hist.plan(scale, seed)
        version, specs = publish(store, plans)
        counts = load_history(url, plans, specs, version, seed)
        targets = finish(store, plans, specs, version)
    finally:
        store.dispose()
    _vacuum_analyze(url)
    summary = {**counts, "dags": len(plans), "build_s": round(time.monotonic() - started, 1)}
    write_marker(url, scale, seed, targets, summary)
    _log(f"built in {summary['build_s']} s: {summary}")
    return targets, summary


def publish(store: Store, plans: list[hist.DagPlan]) -> tuple[str, dict[str, DagSpec]]:
    """Write, pack, parse and store the DAG files as one bundle; its version and the specs."""
    t0 = time.monotonic()
    now = hist.HISTORY_END - timedelta(days=hist.HISTORY_DAYS + 2)
    with tempfile.TemporaryDirectory(prefix="drayman-bench-ui-") as tmp:
        folder = Path(tmp) / "dags"
        folder.mkdir()
        for p in plans:
            (folder / f"{p.dag_id}.py").write_text(p.source())
        packed = pack(folder)
        parsed = parse_bundle(folder, timeout_s=60)
    if parsed.errors or len(parsed.dags) != len(plans):
        raise BuildError(f"the generated DAG files do not parse: {parsed.errors[:3]}")
    specs = {d.spec.dag_id: d.spec for d in parsed.dags}
    _check_specs(plans, specs)
    with store.begin() as conn:
        bundle_store.save_bundle(
            conn, version=packed.version, archive=packed.archive, manifest=packed.manifest, now=now
        )
        record_parse(conn, bundle_version=packed.version, dags=parsed.dags, errors=[], now=now)
        bundle_store.record_deploy(
            conn,
            version=packed.version,
            previous_manifest=None,
            manifest=packed.manifest,
            created_by=DEPLOYER,
            source="deploy",
            now=now,
        )
    _log(f"published {len(plans)} DAGs in {time.monotonic() - t0:.1f} s")
    return packed.version, specs


def _check_specs(plans: list[hist.DagPlan], specs: dict[str, DagSpec]) -> None:
    """The runs are simulated from the plans: the parsed DAGs must say the same."""
    for p in plans:
        spec = specs.get(p.dag_id)
        if spec is None or not _same(p, spec):
            raise BuildError(f"{p.dag_id}: the parsed DAG differs from the generated plan")


def _same(p: hist.DagPlan, spec: DagSpec) -> bool:
    planned = {t: tuple(sorted(up)) for t, up in p.tasks}
    parsed = {t.task_id: tuple(sorted(t.upstream)) for t in spec.tasks.values()}
    retries = {t.retries for t in spec.tasks.values()}
    return parsed == planned and retries == {p.retries} and spec.schedule == p.schedule


# ---------------------------------------------------------------- runs, task instances, tries


RUN_COLUMNS = (
    "id, dag_id, run_id, run_type, state, bundle_version, logical_date, data_interval_start,"
    " data_interval_end, run_after, conf, params, triggered_by, created_at, start_date, end_date"
)
TI_COLUMNS = (
    "id, dag_run_id, task_id, map_index, state, try_number, max_tries, current_try_id,"
    " priority, pool, pool_slots, queue, next_retry_at, queued_at, start_date, end_date, result"
)
TRY_COLUMNS = (
    "id, task_instance_id, try_number, state, hostname, pid, worker_id, queued_at,"
    " start_date, end_date, exit_code, signal, error, log_path"
)


def load_history(
    url: str, plans: list[hist.DagPlan], specs: dict[str, DagSpec], version: str, seed: int
) -> dict[str, int]:
    """COPY every run, task instance and try; returns how many of each."""
    counts = {"runs": 0, "task_instances": 0, "tries": 0}
    rows: dict[str, list[str]] = {"dag_run": [], "task_instance": [], "task_try": []}
    started = last_report = time.monotonic()
    with psycopg.connect(_libpq(url)) as conn:
        conn.execute("SET session_replication_role = replica")  # no FK triggers: ids agree
        for batch in hist.history(plans, seed):
            _batch_rows(batch, plans, specs, version, rows)
            if len(rows["task_instance"]) >= COPY_EVERY_TIS:
                _copy_all(conn, rows, counts)
            if time.monotonic() - last_report > 3:
                last_report = time.monotonic()
                _progress(counts, started)
        _copy_all(conn, rows, counts)
        for table in ("dag_run", "task_instance", "task_try"):
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                f" (SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)"
            )
    _progress(counts, started)
    return counts


def _batch_rows(
    batch: hist.DayBatch,
    plans: list[hist.DagPlan],
    specs: dict[str, DagSpec],
    version: str,
    rows: dict[str, list[str]],
) -> None:
    run_of: dict[int, tuple[str, str]] = {}
    for run in batch.runs:
        p = plans[run.slot.dag]
        spec = specs[p.dag_id]
        run_id = run_store.run_id_for("scheduled", _dt(run.slot.start))
        run_of[run.id] = (p.dag_id, run_id)
        rows["dag_run"].append(_run_line(run, p.dag_id, run_id, version))
        rows["task_instance"].extend(_ti_line(ti, spec) for ti in run.tis)
    for t in batch.tries:
        dag_id, run_id = run_of[t.ti.run_id]
        rows["task_try"].append(
            _try_line(t, log_relpath(dag_id, run_id, t.ti.task_id, -1, t.try_number))
        )


def _run_line(run: hist.RunRow, dag_id: str, run_id: str, version: str) -> str:
    s = run.slot
    return _line(
        run.id, dag_id, run_id, "scheduled", run.state, version, _ts(s.start), _ts(s.start),
        _ts(s.end), _ts(s.run_after), "{}", "{}", "scheduler", _ts(run.created_at),
        _ts(run.start), _ts(run.end),
    )  # fmt: skip


def _ti_line(ti: hist.TIRow, spec: DagSpec) -> str:
    task = spec.tasks[ti.task_id]
    current = ti.tries[-1].id if ti.tries else None
    return _line(
        ti.id, ti.run_id, ti.task_id, -1, ti.state, len(ti.tries), ti.max_tries, current,
        task.priority, task.pool, task.pool_slots, task.queue, _ts(ti.next_retry_at),
        _ts(ti.queued_at), _ts(ti.start), _ts(ti.end), None,
    )  # fmt: skip


def _try_line(t: hist.TryRow, log_path: str) -> str:
    worker = 2 + hist.HOSTS.index(t.hostname)  # component ids: 1 the scheduler, then workers
    finished = t.end is not None
    return _line(
        t.id, t.ti.id, t.try_number, t.state, t.hostname, t.pid, worker, _ts(t.queued_at),
        _ts(t.start), _ts(t.end), (1 if t.failed else 0) if finished else None, None,
        hist.FAIL_ERROR if t.failed else None, log_path,
    )  # fmt: skip


def _line(*values: object) -> str:
    """One row of COPY's text format (the values never hold tabs, newlines or backslashes)."""
    return "\t".join("\\N" if v is None else str(v) for v in values)


def _copy_all(
    conn: psycopg.Connection[Any], rows: dict[str, list[str]], counts: dict[str, int]
) -> None:
    columns = {"dag_run": RUN_COLUMNS, "task_instance": TI_COLUMNS, "task_try": TRY_COLUMNS}
    names = {"dag_run": "runs", "task_instance": "task_instances", "task_try": "tries"}
    for table, lines in rows.items():
        if not lines:
            continue
        with conn.cursor() as cur, cur.copy(f"COPY {table} ({columns[table]}) FROM STDIN") as copy:
            copy.write("\n".join(lines) + "\n")
        counts[names[table]] += len(lines)
        lines.clear()
    conn.commit()


# ---------------------------------------------------------------- logs, workers, next runs


def finish(
    store: Store, plans: list[hist.DagPlan], specs: dict[str, DagSpec], version: str
) -> Targets:
    """What drayman's own store functions write: workers, logs, paused flags, next runs."""
    with store.begin() as conn:
        _components(conn)
        targets = _logs(conn, version)
        _next_runs(conn, plans, specs)
        paused = [p.dag_id for p in plans if p.paused]
        if paused:
            conn.execute(update(dag).where(dag.c.dag_id.in_(paused)).values(is_paused=True))
    return targets


def _components(conn: Any) -> None:
    started = hist.HISTORY_END - timedelta(days=hist.HISTORY_DAYS + 1)
    rows = [("scheduler", "etl-scheduler-01", 0, "celery")]
    rows += [("worker", host, 8, "celery") for host in hist.HOSTS]
    conn.execute(
        component.insert(),
        [
            {
                "id": i,
                "kind": kind,
                "hostname": host,
                "pid": 1000 + i,
                "executor": executor,
                "queues": json.dumps(["default"] if kind == "worker" else []),
                "concurrency": concurrency,
                "state": "stopped",
                "started_at": started,
                "heartbeat_at": hist.HISTORY_END,
                "stopped_at": hist.HISTORY_END,
            }
            for i, (kind, host, concurrency, executor) in enumerate(rows, start=1)
        ],
    )
    conn.execute(text("SELECT setval(pg_get_serial_sequence('component', 'id'), 5)"))


def _logs(conn: Any, version: str) -> Targets:
    """A log for every try of the Gantt run and the big DAG's newest runs; one of several MB."""
    gantt_run = _newest_finished_run(conn, hist.GANTT_DAG_ID)
    big_runs = run_store.list_runs(conn, dag_id=hist.BIG_DAG_ID, limit=LOGGED_BIG_DAG_RUNS)
    big_try = None
    for run in [gantt_run, *big_runs]:
        for t in try_history.tries_of_run(conn, run.id):
            if t.id is None:
                continue
            big = big_try is None and run is gantt_run
            text_ = _log_text(run, t, version, BIG_LOG_BYTES if big else 0)
            chunks = [text_[i : i + CHUNK_CHARS] for i in range(0, len(text_), CHUNK_CHARS)]
            log_store.append_chunks(conn, t.id, 0, chunks, now=t.end_date or t.start_date)
            big_try = t.id if big else big_try
    if big_try is None:
        raise BuildError(f"the run {gantt_run.run_id} of {hist.GANTT_DAG_ID} has no try")
    return Targets(hist.BIG_DAG_ID, hist.GANTT_DAG_ID, gantt_run.run_id, big_try)


def _newest_finished_run(conn: Any, dag_id: str) -> Any:
    for run in run_store.list_runs(conn, dag_id=dag_id, limit=5):
        if run.state in ("success", "failed"):
            return run
    raise BuildError(f"{dag_id} has no finished run")


def _log_text(run: Any, t: Any, version: str, at_least: int) -> str:
    """What drayman's runner writes for a try: its own lines around the task's output."""
    lines = [
        f"[drayman] try {t.try_number} of {run.dag_id}.{t.task_id} (run {run.run_id}, bundle "
        f"{version[:8]}) on {t.hostname} pid {t.pid}"
    ]
    step = t.task_id.split("_")[0]
    body = [f"{step}: batch {i} of rows read={i * 7919 % 100_000} written={i * 104_729 % 99_991}"
            for i in range(40)]  # fmt: skip
    size = sum(len(x) + 1 for x in lines)
    i = 0
    while i < len(body) or size < at_least:
        line = body[i % len(body)] + (f" (pass {i // len(body)})" if i >= len(body) else "")
        lines.append(line)
        size += len(line) + 1
        i += 1
    if t.state == "failed":
        lines.append(f"[drayman] failed: {t.error}")
    elif t.end_date is not None:
        lines.append(f"[drayman] success in {(t.end_date - t.start_date).total_seconds():.2f} s")
    return "\n".join(lines) + "\n"


def _next_runs(conn: Any, plans: list[hist.DagPlan], specs: dict[str, DagSpec]) -> None:
    for p in plans:
        spec = specs[p.dag_id]
        last = hist.fire_times(p, 2)
        previous = RunInfo(last[0], last[0], last[1], last[1])
        nxt = parse_schedule(spec.schedule, spec.timezone).next_run(
            previous, start_date=None, end_date=None, catchup=False, now=hist.HISTORY_END
        )
        stored = None if nxt is None else NextRun(
            nxt.logical_date, nxt.data_interval_start, nxt.data_interval_end, nxt.run_after
        )  # fmt: skip
        set_next_run(conn, p.dag_id, stored, hist.HISTORY_END)


# ---------------------------------------------------------------- the end of a build


def _vacuum_analyze(url: str) -> None:
    t0 = time.monotonic()
    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
    _log(f"VACUUM ANALYZE in {time.monotonic() - t0:.1f} s")


def write_marker(
    url: str, scale: float, seed: int, targets: Targets, summary: dict[str, Any]
) -> None:
    """Mark the build complete: only a database with this marker is ever reused."""
    document = {
        "generator_version": GENERATOR_VERSION,
        "scale": scale,
        "seed": seed,
        "completed_at": datetime.now(UTC).isoformat(),
        "targets": targets.__dict__,
        "summary": summary,
    }
    with psycopg.connect(_libpq(url)) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS drayman_bench")
        conn.execute("CREATE TABLE IF NOT EXISTS drayman_bench.marker (document text NOT NULL)")
        conn.execute("DELETE FROM drayman_bench.marker")
        conn.execute("INSERT INTO drayman_bench.marker VALUES (%s)", [json.dumps(document)])


def counts(url: str) -> dict[str, int]:
    """Rows per table of the history, for checks."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                table: int(conn.execute(select(func.count()).select_from(text(table))).scalar_one())
                for table in ("dag", "serialized_dag", "dag_run", "task_instance", "task_try",
                              "log_chunk")
            }  # fmt: skip
    finally:
        engine.dispose()


# ---------------------------------------------------------------- helpers


def _libpq(url: str) -> str:
    """A SQLAlchemy URL as psycopg wants it."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _dt(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _ts(seconds: float | None) -> str | None:
    """Naive UTC, as `store.types.UtcDateTime` stores times."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None).isoformat(" ")


def _progress(counts: dict[str, int], started: float) -> None:
    elapsed = max(time.monotonic() - started, 1e-9)
    total = sum(counts.values())
    _log(
        f"{counts['runs']:,} runs, {counts['task_instances']:,} task instances, "
        f"{counts['tries']:,} tries ({total / elapsed:,.0f} rows/s)"
    )


def _log(message: str) -> None:
    print(f"ui_data: {message}", file=sys.stderr, flush=True)


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ui_data", description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="1.0: about 1,000,000 tries")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--rebuild", action="store_true", help="build even if one is complete")
    parser.add_argument(
        "--database-url", default=None, help="fill this empty database instead (never reused)"
    )
    args = parser.parse_args(None if argv is None else list(argv))
    try:
        if args.database_url:
            targets, summary = build(args.database_url, scale=args.scale, seed=args.seed)
            result = {"url": args.database_url, "reused": False, "targets": targets.__dict__,
                      "summary": summary}  # fmt: skip
        else:
            built = ensure(scale=args.scale, seed=args.seed, rebuild=args.rebuild)
            result = {"url": built.url, "reused": built.reused,
                      "targets": built.targets.__dict__, "summary": built.summary}  # fmt: skip
    except BuildError as exc:
        print(f"ui_data: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
