"""drayman's benchmark: `python -m bench run W1 --db sqlite --json`; see bench/README.md.

    python -m bench run {W1,W2,W3,W4,all} [--db sqlite|postgresql] [--repeat N] [--size N]
                                          [--parallelism N] [--timeout S] [--json]
                                          [--executor local|celery] [--workers N]
                                          [--worker-concurrency N] [--remote-poll S]
    python -m bench run UI --db postgresql [--requests N] [--rebuild] [--scale S] [--json]
    python -m bench memory [--json]
    python -m bench floor [--tries N] [--json]
    python -m bench version [--runs N] [--json]

Exit status 1 with a message on stderr when a benchmark cannot run or does not finish.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.floor import floor_text, measure_floor
from bench.harness import measure_memory, measure_version, run_workload
from bench.results import machine
from bench.workloads import WORKLOADS
from drayman.config import Settings

PRIMARY = {
    "W1": "wall_s",
    "W2": "hop_median_s",
    "W3": "wall_s",
    "W4": "wall_s",
}  # what --repeat takes the median of


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "memory":
            _emit(measure_memory(), args.json, _memory_text)
            return 0
        if args.command == "floor":
            _emit(measure_floor(args.tries), args.json, floor_text)
            return 0
        _emit(measure_version(args.runs), args.json, _version_text)
        return 0
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a workload against a fresh scheduler")
    run.add_argument("workload", choices=[*WORKLOADS, "UI", "all"])
    run.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    run.add_argument("--repeat", type=int, default=1, help="runs per workload; reports the median")
    run.add_argument(
        "--size",
        type=int,
        default=None,
        help="tasks (W1, W2), DAGs (W3) or runs (W4) instead of the default, e.g. for a smoke test",
    )
    run.add_argument(
        "--parallelism",
        type=int,
        default=None,
        help="DRAYMAN_PARALLELISM (default: drayman's own; with celery, the least each queue may "
        "hold queued or running: the cap is twice the live workers' total concurrency)",
    )
    run.add_argument(
        "--executor",
        choices=["local", "celery"],
        default="local",
        help="celery: Redis broker (DRAYMAN_BENCH_BROKER_URL, db 13) and `drayman worker`s",
    )
    run.add_argument(
        "--workers",
        type=int,
        default=None,
        help="celery: `drayman worker` processes (default: 4 for W4, else 1)",
    )
    run.add_argument(
        "--worker-concurrency", type=int, default=8, help="celery: --concurrency of each worker"
    )
    run.add_argument(
        "--remote-poll",
        type=float,
        default=None,
        metavar="S",
        help="celery: DRAYMAN_REMOTE_POLL_S (default: drayman's own, 0.5)",
    )
    run.add_argument("--timeout", type=float, default=120.0, help="seconds a run may take")
    run.add_argument("--json", action="store_true", help="print one JSON object")
    run.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="record each run with py-spy (collapsed stacks) into DIR; slows the run down",
    )
    run.add_argument("--requests", type=int, default=20, help="UI: timed requests per page")
    run.add_argument("--rebuild", action="store_true", help="UI: build its database again")
    run.add_argument("--scale", type=float, default=1.0, help="UI: history size (1.0: 1M tries)")
    memory = commands.add_parser("memory", help="PSS of an idle `drayman standalone`")
    memory.add_argument("--json", action="store_true")
    floor = commands.add_parser(
        "floor", help="CPU of a try's process isolation alone: the ceiling on tries/s"
    )
    floor.add_argument("--tries", type=int, default=400, help="no-op tries per batch")
    floor.add_argument("--json", action="store_true")
    version = commands.add_parser("version", help="time `drayman --version`")
    version.add_argument("--runs", type=int, default=20)
    version.add_argument("--json", action="store_true")
    return parser


def _run(args: argparse.Namespace) -> int:
    if args.workload == "UI":
        from bench.ui import run_ui

        report = run_ui(db=args.db, requests=args.requests, rebuild=args.rebuild, scale=args.scale)
        print(json.dumps(report) if args.json else json.dumps(report, indent=2))
        return 0
    if args.executor == "celery" and args.db != "postgresql":
        raise BenchError(
            f"--executor celery needs --db postgresql (not {args.db}): the scheduler and the "
            "workers are separate processes sharing one database"
        )
    names = list(WORKLOADS) if args.workload == "all" else [args.workload]
    reports = []
    for name in names:
        workload = WORKLOADS[name]
        size = args.size or workload.default_size
        workers = args.workers or (4 if name == "W4" else 1)
        # drayman's default; with Celery each queue's cap grows with the live workers' slots
        parallelism = args.parallelism or Settings().parallelism
        results: list[dict[str, Any]] = []
        for _ in range(max(args.repeat, 1)):
            result = run_workload(
                workload,
                db=args.db,
                size=size,
                parallelism=parallelism,
                timeout_s=args.timeout,
                profile=_profile_path(args.profile, name, args.db, len(results)),
                executor=args.executor,
                workers=workers,
                worker_concurrency=args.worker_concurrency,
                remote_poll_s=args.remote_poll,
            )
            results.append(result.to_json())
            if not args.json:
                print(f"  {name} run {len(results)}: {_line(results[-1])}", file=sys.stderr)
        reports.append(_summarize(name, results))
        if not args.json:
            print(_run_text(reports[-1]))
    if args.json:
        print(
            json.dumps(
                reports[0] if len(reports) == 1 else {"results": reports, "machine": machine()}
            )
        )
    return 0


def _profile_path(folder: Path | None, name: str, db: str, index: int) -> Path | None:
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}-{db}-{index + 1}.txt"


def _summarize(name: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    """The median run (by the workload's primary number), with every run's values."""
    key = PRIMARY[name]
    ordered = sorted(results, key=lambda r: r[key])
    report = dict(ordered[(len(ordered) - 1) // 2])
    if len(results) > 1:
        report["repeats"] = len(results)
        report["all"] = {
            field: [r[field] for r in results]
            for field in (
                "wall_s",
                "cpu_s_per_try",
                "hop_median_s",
                "hop_p95_s",
                "tries_per_s",
                "ready_to_running_p99_s",
            )
            if field in results[0]
        }
        report["median_of"] = key
        report["stdev_" + key] = round(statistics.stdev(r[key] for r in results), 4)
    return report


def _line(result: dict[str, Any]) -> str:
    parts = [f"wall {result['wall_s']:.3f}s", f"cpu/try {result['cpu_s_per_try'] * 1000:.1f}ms"]
    if result["tries"] >= 1000:
        parts.append(
            f"{result['tries_per_s']:.0f} tries/s sustained, ready->running "
            f"p50 {result['ready_to_running_p50_s'] * 1000:.0f}ms "
            f"p99 {result['ready_to_running_p99_s'] * 1000:.0f}ms"
        )
    if "hop_median_s" in result:
        parts.append(
            f"hop median {result['hop_median_s'] * 1000:.1f}ms "
            f"p95 {result['hop_p95_s'] * 1000:.1f}ms"
        )
    return ", ".join(parts)


def _run_text(report: dict[str, Any]) -> str:
    lines = [
        f"{report['workload']} on {report['db']} ({_executor_text(report)}, parallelism "
        f"{report['parallelism']}, {report['tries']} tries): {_line(report)}",
        f"    first try started {report['first_start_s'] * 1000:.0f}ms after the trigger; "
        f"queued->started median {report['queue_to_start_median_s'] * 1000:.1f}ms; "
        f"try run median {report['try_run_median_s'] * 1000:.1f}ms; "
        f"last try end->run end {report['last_end_to_run_end_s'] * 1000:.1f}ms",
    ]
    if "all" in report:
        lines.append(f"    median of {report['repeats']} runs; all: {report['all']}")
    return "\n".join(lines)


def _executor_text(report: dict[str, Any]) -> str:
    if report["executor"] != "celery":
        return f"{report['executor']} executor"
    return (
        f"celery executor, {report['workers']} worker(s) x {report['worker_concurrency']}, "
        f"remote poll {report['remote_poll_s']}s"
    )


def _memory_text(data: dict[str, Any]) -> str:
    lines = [
        f"drayman standalone, idle: PSS {data['pss_mb_total']:.1f} MB total "
        f"(exit after SIGTERM: {data['exit_code']})"
    ]
    lines += [f"  {p['pid']:>7}  {p['pss_mb']:7.1f} MB  {p['cmd']}" for p in data["processes"]]
    return "\n".join(lines)


def _version_text(data: dict[str, Any]) -> str:
    return (
        f"{data['command']}: median {data['median_s']:.3f}s, min {data['min_s']:.3f}s, "
        f"max {data['max_s']:.3f}s over {data['runs']} runs"
    )


def _emit(data: dict[str, Any], as_json: bool, text: Any) -> None:
    print(json.dumps(data) if as_json else text(data))


if __name__ == "__main__":
    sys.exit(main())
