"""The API's request and response shapes: what /api/v1/openapi.json documents.

Request bodies forbid unknown fields: an action is aimed by its URL alone, so a body cannot
name another DAG or run than the one the role check looked at ("URL and body agree").
Responses are validated against these models by FastAPI, so the document cannot drift from
what the server sends.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from drayman import run_ids
from drayman.store.schema import ID


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None


class ErrorBody(BaseModel):
    error: ErrorDetail


class Paged(BaseModel):
    total: int
    limit: int
    offset: int


# -- DAGs ------------------------------------------------------------------------------------


class RunBrief(BaseModel):
    run_id: str
    state: str
    run_type: str
    logical_date: str | None


class DagSummary(BaseModel):
    dag_id: str
    schedule: str | None
    timezone: str
    is_paused: bool
    is_active: bool
    tags: list[str]
    description: str
    fileloc: str
    bundle_version: str
    next_run_after: str | None
    next_run_after_local: str | None
    next_logical_date: str | None
    max_active_runs: int
    max_active_tasks: int
    recent_runs: list[RunBrief] | None = None


class DagPage(Paged):
    items: list[DagSummary]


class ParamInfo(BaseModel):
    default: Any = None
    type: str | None
    description: str
    required: bool


class TaskInfo(BaseModel):
    task_id: str
    kind: str
    upstream: list[str]
    queue: str


class NextRun(BaseModel):
    run_after: str
    run_after_utc: str
    logical_date: str
    data_interval_start: str
    data_interval_end: str
    dst_change: str | None


class DagDetail(DagSummary):
    params: dict[str, ParamInfo]
    tasks: list[TaskInfo]
    catchup: bool
    start_date: str | None
    end_date: str | None
    next_runs: list[NextRun]


class DagPatch(Strict):
    paused: bool


class CodeVersion(BaseModel):
    bundle_version: str
    created_at: str | None


class DagCode(BaseModel):
    dag_id: str
    bundle_version: str
    fileloc: str
    source: str
    versions: list[CodeVersion]


class ImportErrorItem(BaseModel):
    fileloc: str
    lineno: int | None
    message: str
    bundle_version: str
    created_at: str | None


class ImportErrorPage(Paged):
    items: list[ImportErrorItem]


# -- runs ------------------------------------------------------------------------------------


class Run(BaseModel):
    dag_id: str
    run_id: str
    run_type: str
    state: str
    bundle_version: str
    logical_date: str | None
    data_interval_start: str | None
    data_interval_end: str | None
    run_after: str | None
    conf: dict[str, Any]
    params: dict[str, Any]
    triggered_by: str
    created_at: str | None
    start_date: str | None
    end_date: str | None
    duration_s: float | None


class RunPage(Paged):
    items: list[Run]


class TriggerBody(Strict):
    conf: dict[str, Any] = Field(default_factory=dict)
    # checked by drayman.run_ids (as the CLI's and the pages' are), which says what is wrong;
    # the document still tells clients the rule
    run_id: str | None = Field(
        default=None,
        json_schema_extra={"pattern": run_ids.PATTERN, "minLength": 1, "maxLength": ID},
        description="letters, digits and _ . : + -; no '..', no scheduled__ or backfill__ prefix",
    )


class ClearRunBody(Strict):
    only_failed: bool = False
    dry_run: bool = False


class TaskInstanceKey(BaseModel):
    task_id: str
    map_index: int


class ActionResult(BaseModel):
    dag_id: str
    run_id: str
    dry_run: bool
    task_instances: list[TaskInstanceKey]


# -- task instances and tries ----------------------------------------------------------------


class TaskInstance(BaseModel):
    task_id: str
    map_index: int
    state: str
    try_number: int
    max_tries: int
    queue: str
    pool: str
    priority: int
    queued_at: str | None
    start_date: str | None
    end_date: str | None
    next_retry_at: str | None
    current_try_id: int | None


class TaskInstancePage(Paged):
    items: list[TaskInstance]


class Try(BaseModel):
    try_id: int
    try_number: int
    state: str
    hostname: str
    pid: int | None
    worker_id: int | None
    queued_at: str | None
    start_date: str | None
    end_date: str | None
    duration_s: float | None
    exit_code: int | None
    signal: int | None
    error: str | None


class TryPage(Paged):
    items: list[Try]


class TryDetail(Try):
    dag_id: str
    run_id: str
    task_id: str
    map_index: int


class ClearTaskBody(Strict):
    downstream: bool = False
    upstream: bool = False
    only_failed: bool = False
    map_index: int | None = Field(default=None, ge=-1, le=1_000_000)
    dry_run: bool = False


class MarkTaskBody(Strict):
    state: Literal["success", "failed"]
    downstream: bool = False
    upstream: bool = False
    map_index: int | None = Field(default=None, ge=-1, le=1_000_000)
    dry_run: bool = False


class CancelTaskBody(Strict):
    map_index: int = Field(default=-1, ge=-1, le=1_000_000)
    dry_run: bool = False


# -- logs ------------------------------------------------------------------------------------


class LogChunk(BaseModel):
    seq: int
    text: str


class LogPage(BaseModel):
    try_id: int
    source: Literal["database", "file", "none"]
    finished: bool
    items: list[LogChunk]
    total: int
    limit: int
    after_seq: int
    next_after_seq: int


# -- workers and queues ----------------------------------------------------------------------


class Worker(BaseModel):
    id: int
    hostname: str
    pid: int
    executor: str
    queues: list[str]
    concurrency: int
    running: int
    heartbeat_age_s: float
    heartbeat_at: str | None
    started_at: str | None
    stopped_at: str | None
    state: str


class WorkerPage(Paged):
    items: list[Worker]


class Queue(BaseModel):
    queue: str
    waiting: int
    running: int
    workers: int
    concurrency: int
    cap: int | None  # with Celery: the most tries of the queue queued or running at once
    note: str


class QueuePage(Paged):
    items: list[Queue]
