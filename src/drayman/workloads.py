"""What the scheduler hands to an executor, and what comes back.

A workload is everything a worker needs to run one try (or one DAG callback) without asking
the scheduler anything else: which bundle version, which file, which task, the context values
and the upstream results. It is plain JSON-able data. The local executor passes it whole over a
pipe; a remote executor sends only `try_id` and the worker rebuilds the same workload from the
store, so a forged message can name nothing that is not already a try of a deployed bundle.

`try_id` is the fencing token: the store accepts a try's start and outcome only while that try
is the task instance's current one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal


@dataclass(frozen=True)
class RunContextData:
    """The run-level part of a task's context, as JSON-able data (times in ISO 8601)."""

    dag_id: str
    run_id: str
    run_type: str
    logical_date: str  # aware, in the DAG's timezone
    data_interval_start: str
    data_interval_end: str
    timezone: str
    bundle_version: str
    params: dict[str, Any] = field(default_factory=dict)  # defaults overridden by conf
    conf: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TryWorkload:
    """One try of one task instance."""

    try_id: int
    ti_id: int
    task_id: str
    map_index: int  # -1 for a task that is not mapped
    try_number: int  # 1 for the first try
    max_tries: int  # retries + 1
    fileloc: str  # the DAG file, relative to the bundle root
    run: RunContextData
    upstream_results: dict[str, Any] = field(default_factory=dict)
    execution_timeout_s: float | None = None
    queue: str = "default"
    log_path: str = ""
    kind: Literal["try"] = "try"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TryWorkload:
        values = dict(data)
        values["run"] = RunContextData(**values["run"])
        return cls(**values)


@dataclass(frozen=True)
class CallbackWorkload:
    """A DAG-level callback (`on_success` / `on_failure` of a finished run)."""

    callback: Literal["on_success", "on_failure"]
    fileloc: str
    run: RunContextData
    reason: str = ""
    log_path: str = ""
    kind: Literal["callback"] = "callback"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CallbackWorkload:
        values = dict(data)
        values["run"] = RunContextData(**values["run"])
        return cls(**values)


Workload = TryWorkload | CallbackWorkload


@dataclass(frozen=True)
class TryStarted:
    """A worker began running a try."""

    try_id: int
    hostname: str
    pid: int
    started_at: datetime


@dataclass(frozen=True)
class TryOutcome:
    """How a try ended, as seen by the worker that ran it."""

    try_id: int
    succeeded: bool
    started_at: datetime
    ended_at: datetime
    hostname: str = ""
    pid: int | None = None
    exit_code: int | None = None
    signal: int | None = None  # the signal that killed the task's process, if one did
    error: str | None = None  # one line: why it failed
    result_json: str | None = None  # the JSON of a Python task's return value
    timed_out: bool = False
    # the worker stopped it (its shutdown grace ran out): retried without using up a retry
    handed_back: bool = False


@dataclass(frozen=True)
class RunsChanged:
    """Workers elsewhere recorded outcomes of these runs' tries in the store (a broker wake-up,
    ADR 9): nothing to record, only runs to re-plan. `all_runs`: which is unknown, re-plan all."""

    run_ids: frozenset[int] = frozenset()
    all_runs: bool = False


ExecutorEvent = TryStarted | TryOutcome | RunsChanged


@dataclass(frozen=True)
class LogChunks:
    """Consecutive chunks of one try's log, numbered from `first_seq`, on their way to the store."""

    try_id: int
    first_seq: int
    chunks: tuple[str, ...]


@dataclass(frozen=True)
class CallbackDone:
    """A DAG-level callback's workload is over (run, failed or never started)."""

    workload: CallbackWorkload


DISPATCH_ERROR_CHARS = 300  # a try's error is one line; an exception's text can be megabytes


def dispatch_error(exc: BaseException) -> str:
    """The error of a try that could not be handed to a worker: what went wrong, one line.

    Whatever stops one try from being built or sent (a run conf too deep to pickle, a stored
    value that is not JSON, a task the DAG version lacks) fails that try alone with this
    error, in its record and in its log; the other tries of the batch run.
    """
    detail = " ".join(str(exc).split())
    text = f"cannot be dispatched: {type(exc).__name__}" + (f": {detail}" if detail else "")
    if len(text) > DISPATCH_ERROR_CHARS:
        text = text[: DISPATCH_ERROR_CHARS - 3] + "..."
    return text


def log_relpath(dag_id: str, run_id: str, task_id: str, map_index: int, try_number: int) -> str:
    """Where one try's log lives, relative to the logs folder (the same on every worker)."""
    safe_run = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    task = task_id if map_index < 0 else f"{task_id}[{map_index}]"
    # one folder per run, not per task: creating a folder is a measurable part of a try's cost
    return f"{dag_id}/{safe_run}/{task}.try_{try_number}.log"
