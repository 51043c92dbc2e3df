"""Summarize a py-spy profile that `python -m bench run ... --profile DIR` recorded.

    python -m bench.profile_summary DIR/W1-sqlite-1.txt [--top 15]

The file holds collapsed stacks ("process A;process B;frame;frame... count"). A stack's
process chain says what it is: the scheduler (1 process), the forkserver or resource tracker
(2), a local worker (3), a try's forked child (4). Scheduler samples are split by tick phase
(`Scheduler._queue`, `_advance_runs`, ...) and by what SQLAlchemy was doing (building and
compiling statements, the driver's round trip, reading rows).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROLES = {1: "scheduler", 2: "forkserver", 3: "worker", 4: "try child"}
FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^():]+)(?::\d+)?\)$")
SQL_DRIVER = ("do_execute", "cursor.execute", "Cursor.execute", "execute (psycopg", "commit")


@dataclass
class Profile:
    """Samples by role, scheduler phase, SQL activity and hottest functions."""

    total: int = 0
    roles: Counter[str] = field(default_factory=Counter)
    phases: Counter[str] = field(default_factory=Counter)
    sql: Counter[str] = field(default_factory=Counter)
    leaves: dict[str, Counter[str]] = field(default_factory=dict)
    drayman: dict[str, Counter[str]] = field(default_factory=dict)


def parse(path: Path) -> Profile:
    """Read a collapsed-stack file into a Profile."""
    profile = Profile()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        parts = stack.split(";")
        processes = [p for p in parts if p.startswith("process ")]
        frames = [p for p in parts if not p.startswith("process ")]
        role = ROLES.get(len(processes), f"depth {len(processes)}")
        if role == "forkserver" and any("resource_tracker" in p for p in processes[-1:]):
            role = "resource tracker"
        if role == "forkserver" and any("drayman/runner/worker.py" in f for f in frames):
            role = "worker"  # py-spy may attribute a fresh worker to its parent's chain
        profile.total += count
        profile.roles[role] += count
        if frames:
            profile.leaves.setdefault(role, Counter())[_short(frames[-1])] += count
            for name in {_short(f) for f in frames if "drayman/" in f}:
                profile.drayman.setdefault(role, Counter())[name] += count
        if role == "scheduler":
            profile.phases[_phase(frames)] += count
            profile.sql[_sql(frames)] += count
    return profile


def _short(frame: str) -> str:
    match = FRAME.match(frame)
    return f"{match['func']} ({match['file']})" if match else frame


def _phase(frames: list[str]) -> str:
    names = [_short(f).split(" ")[0] for f in frames]
    if "Scheduler.tick" in names:
        below = names[names.index("Scheduler.tick") + 1 :]
        for name in below:
            if name.startswith("Scheduler.") or name.endswith(".submit"):
                return f"tick: {name}"
        return "tick: (itself)"
    for name in ("Scheduler._sleep_for", "BaseSelector.select", "EpollSelector.select"):
        if name in names:
            return f"loop: {name}"
    if any("local.py" in f for f in frames):
        return "executor reader thread"
    if any("processor" in f or "bundles/" in f for f in frames):
        return "dag processor thread"
    return "other: " + (names[-1] if names else "?")


def _sql(frames: list[str]) -> str:
    text = ";".join(frames)
    if "sqlalchemy" not in text:
        return "no SQLAlchemy"
    if any(marker in text for marker in SQL_DRIVER):
        return "SQL: driver round trip (execute/commit)"
    if "compile" in text.lower() or "_compiler" in text:
        return "SQL: compiling statements"
    if "Result" in text or "fetch" in text or "process" in text:
        return "SQL: reading rows (result processing)"
    return "SQL: building statements, connection, transaction"


def report(profile: Profile, top: int) -> str:
    """A readable summary of `profile`."""
    total = max(profile.total, 1)

    def block(title: str, counter: Counter[str], limit: int = top) -> list[str]:
        rows = [f"{title}:"]
        rows += [
            f"  {n:6d} {100 * n / total:5.1f}%  {name}" for name, n in counter.most_common(limit)
        ]
        return rows

    lines = [f"{profile.total} samples (CPU only, every process of the scheduler's tree)"]
    lines += block("by process", profile.roles)
    lines += block("scheduler by phase", profile.phases)
    lines += block("scheduler SQL", profile.sql)
    for role in profile.roles:
        lines += block(f"{role}: hottest leaf functions", profile.leaves.get(role, Counter()), 8)
        lines += block(
            f"{role}: drayman functions (inclusive)", profile.drayman.get(role, Counter())
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_summary")
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args(argv)
    print(report(parse(args.profile), args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
