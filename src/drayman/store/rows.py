"""Whole-table rows the store hands out: frozen values, not SQLAlchemy `Row`s.

Callers read attributes named after the columns (`run.dag_id`, `ti.state`), exactly as they
did on SQLAlchemy rows, but get types mypy checks and values nobody can mistake for a live
cursor. A row type with the columns of a query of its own lives next to that query; the ones
here are the full rows of tables several modules read. A test holds each field list equal to
its table's columns, so a migration that adds a column cannot leave its row type behind.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import Row


class _FromColumns(Protocol):
    def __init__(self, **columns: Any) -> None: ...


R = TypeVar("R", bound=_FromColumns)


def one_as(kind: type[R], row: Row[Any]) -> R:
    """`row` as a `kind`, matched by column label."""
    return kind(**row._mapping)


def all_as(kind: type[R], rows: Iterable[Row[Any]]) -> list[R]:
    """Every row of `rows` as a `kind`, matched by column label."""
    return [kind(**row._mapping) for row in rows]


@dataclass(frozen=True, slots=True)
class DagRow:
    """A `dag` row: a DAG as its newest bundle defines it, with its next scheduled run."""

    dag_id: str
    bundle_version: str
    fileloc: str
    is_paused: bool
    is_active: bool
    schedule: str | None
    timezone: str
    description: str
    tags: str
    max_active_runs: int
    max_active_tasks: int
    schedule_key: str
    needs_next: bool
    next_logical_date: datetime | None
    next_data_interval_start: datetime | None
    next_data_interval_end: datetime | None
    next_run_after: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class DagRunRow:
    """A `dag_run` row: one run of a DAG."""

    id: int
    dag_id: str
    run_id: str
    run_type: str
    state: str
    bundle_version: str
    logical_date: datetime
    data_interval_start: datetime
    data_interval_end: datetime
    run_after: datetime
    conf: str
    params: str
    triggered_by: str
    created_at: datetime
    start_date: datetime | None
    end_date: datetime | None
    callback_claimed_at: datetime | None


@dataclass(frozen=True, slots=True)
class TaskInstanceRow:
    """A `task_instance` row: one task (or one element of a mapped task) of one run."""

    id: int
    dag_run_id: int
    task_id: str
    map_index: int
    state: str
    try_number: int
    max_tries: int
    current_try_id: int | None
    priority: int
    pool: str
    pool_slots: int
    queue: str
    next_retry_at: datetime | None
    queued_at: datetime | None
    start_date: datetime | None
    end_date: datetime | None
    result: str | None


@dataclass(frozen=True, slots=True)
class LockedTaskInstance(TaskInstanceRow):
    """A task instance read under its row lock, with the current try id it was read with.

    `fence` is `current_try_id` as read under the lock: the try whose outcome may be recorded.
    """

    fence: int | None


@dataclass(frozen=True, slots=True)
class TryRow:
    """A `task_try` row: one attempt at a task instance."""

    id: int
    task_instance_id: int
    try_number: int
    state: str
    hostname: str
    pid: int | None
    worker_id: int | None
    queued_at: datetime
    start_date: datetime | None
    end_date: datetime | None
    exit_code: int | None
    signal: int | None
    error: str | None
    log_path: str
