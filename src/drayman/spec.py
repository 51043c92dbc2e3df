"""The serialized DAG: the contract between parsing and scheduling.

The DAG processor turns user code into a `DagSpec` in a child process; the scheduler and the
web server only ever read `DagSpec`s from the store, so they never import user code.
A spec is plain data: `to_json()` / `from_json()` round-trip it exactly.

Task arguments and mapped inputs are JSON values in which a reference to an upstream task's
result is written `{"__result__": "task_id"}` (see `result_ref`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

TaskKind = Literal["python", "shell"]

TRIGGER_RULES: frozenset[str] = frozenset(
    {
        "all_success",
        "all_failed",
        "all_done",
        "one_success",
        "one_failed",
        "none_failed",
        "always",
    }
)

RESULT_REF_KEY = "__result__"


def result_ref(task_id: str) -> dict[str, str]:
    """The JSON form of "the return value of task `task_id`"."""
    return {RESULT_REF_KEY: task_id}


def referenced_tasks(value: Any) -> set[str]:
    """Every task id referenced by result refs anywhere inside a JSON value."""
    found: set[str] = set()
    if isinstance(value, dict):
        if set(value) == {RESULT_REF_KEY}:
            found.add(value[RESULT_REF_KEY])
        else:
            for item in value.values():
                found |= referenced_tasks(item)
    elif isinstance(value, list):
        for item in value:
            found |= referenced_tasks(item)
    return found


def resolve_refs(value: Any, results: dict[str, Any]) -> Any:
    """Replace every result ref inside `value` by the upstream task's result."""
    if isinstance(value, dict):
        if set(value) == {RESULT_REF_KEY}:
            return results.get(value[RESULT_REF_KEY])
        return {key: resolve_refs(item, results) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_refs(item, results) for item in value]
    return value


@dataclass(frozen=True)
class ParamSpec:
    """One DAG parameter: a default and an optional JSON-schema-like type."""

    default: Any = None
    type: str | None = None  # "string" | "integer" | "number" | "boolean" | "array" | "object"
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class TaskSpec:
    """One task as the scheduler sees it."""

    task_id: str
    kind: TaskKind
    upstream: tuple[str, ...] = ()
    trigger_rule: str = "all_success"
    retries: int = 0
    retry_delay_s: float = 300.0
    retry_backoff: bool = False
    max_retry_delay_s: float | None = None
    execution_timeout_s: float | None = None
    queue: str = "default"
    pool: str = "default_pool"
    pool_slots: int = 1
    priority: int = 1
    # python tasks: keyword arguments (JSON with result refs)
    args: dict[str, Any] = field(default_factory=dict)
    # dynamic fan-out: {"kwarg": <JSON list or result ref>}; one task instance per element
    expand: dict[str, Any] | None = None
    # shell tasks: templated command, env and working directory
    command: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    callbacks: tuple[str, ...] = ()  # which of on_success / on_failure / on_retry are set
    doc: str = ""

    @property
    def is_mapped(self) -> bool:
        return self.expand is not None


@dataclass(frozen=True)
class DagSpec:
    """One DAG as the scheduler sees it, at one bundle version."""

    dag_id: str
    fileloc: str  # path of the defining file, relative to the bundle root
    schedule: str | None = None  # cron / preset, "interval:<seconds>", or None for manual
    timezone: str = "UTC"
    start_date: str | None = None  # ISO 8601, aware, in the DAG's timezone
    end_date: str | None = None
    catchup: bool = False
    max_active_runs: int = 16
    max_active_tasks: int = 16
    params: dict[str, ParamSpec] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    description: str = ""
    callbacks: tuple[str, ...] = ()  # which of on_success / on_failure are set on the DAG
    tasks: dict[str, TaskSpec] = field(default_factory=dict)

    def downstream(self) -> dict[str, list[str]]:
        """Task id -> ids of the tasks directly downstream of it."""
        result: dict[str, list[str]] = {task_id: [] for task_id in self.tasks}
        for task in self.tasks.values():
            for up in task.upstream:
                result[up].append(task.task_id)
        return result

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DagSpec:
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        values["params"] = {
            name: ParamSpec(**param) for name, param in data.get("params", {}).items()
        }
        values["tags"] = tuple(data.get("tags", ()))
        values["callbacks"] = tuple(data.get("callbacks", ()))
        values["tasks"] = {
            task_id: _task_from_dict(task) for task_id, task in data.get("tasks", {}).items()
        }
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> DagSpec:
        return cls.from_dict(json.loads(text))


def _task_from_dict(data: dict[str, Any]) -> TaskSpec:
    known = {f.name for f in fields(TaskSpec)}
    values = {key: value for key, value in data.items() if key in known}
    values["upstream"] = tuple(data.get("upstream", ()))
    values["callbacks"] = tuple(data.get("callbacks", ()))
    return TaskSpec(**values)


@dataclass(frozen=True)
class ParsedDag:
    """One DAG found by parsing a bundle, with the code of the file that defines it."""

    spec: DagSpec
    source: str


@dataclass(frozen=True)
class ImportFailure:
    """A DAG file that could not be turned into DAGs: where, and why, in one line."""

    fileloc: str
    lineno: int | None
    message: str
