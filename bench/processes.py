"""Process accounting from /proc: CPU by process tree and role, memory, command lines; py-spy.

Process CPU is read from /proc: utime + stime of a process and every live descendant, plus
cutime + cstime, which hold the CPU of descendants that have exited and were reaped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


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


def start_profiler(pid: int, out: Path) -> subprocess.Popen[bytes]:
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


def stop_profiler(profiler: subprocess.Popen[bytes], out: Path | None) -> None:
    profiler.send_signal(signal.SIGINT)
    try:
        profiler.wait(30)
    except subprocess.TimeoutExpired:
        profiler.kill()
        profiler.wait()
    print(f"bench: py-spy profile (collapsed stacks) in {out}", file=sys.stderr)
