"""Reads only the HTML pages make (the rest they share with the API in `store.history`).

A page must answer as fast with two years of history as with two days, so nothing here reads
a DAG's whole history: the grid's runs come through the `(dag_id, logical_date)` index newest
first with a LIMIT, their task instances through the `(dag_run_id, task_id, map_index)` unique
index, tries through `(task_instance_id, try_number)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, func, select

from drayman.store.rows import DagRunRow, all_as
from drayman.store.schema import dag_run, task_instance, task_try


def latest_runs(conn: Connection, dag_id: str, limit: int) -> list[DagRunRow]:
    """The DAG's newest `limit` runs, newest first (the grid's columns)."""
    return all_as(
        DagRunRow,
        conn.execute(
            select(dag_run)
            .where(dag_run.c.dag_id == dag_id)
            .order_by(dag_run.c.logical_date.desc(), dag_run.c.id.desc())
            .limit(limit)
        ),
    )


def newest_try_id() -> ColumnElement[int]:
    """The id of the newest try of the task instance in the row: its current try (the fence,
    always the newest), else, for one cleared or marked by hand, the highest try id."""
    return func.coalesce(
        task_instance.c.current_try_id,
        select(func.max(task_try.c.id))
        .where(task_try.c.task_instance_id == task_instance.c.id)
        .scalar_subquery(),
    )


@dataclass(frozen=True, slots=True)
class GridCell:
    """A task instance of a run as the grid shows it, with its newest try's id (if any)."""

    id: int
    dag_run_id: int
    task_id: str
    map_index: int
    state: str
    try_number: int
    queued_at: datetime | None
    start_date: datetime | None
    end_date: datetime | None
    try_id: int | None


def task_instances_of(conn: Connection, run_pks: Sequence[int]) -> list[GridCell]:
    """The task instances of a few runs (the grid's cells), each with its newest try's id."""
    if not run_pks:
        return []
    return all_as(
        GridCell,
        conn.execute(
            select(
                task_instance.c.id,
                task_instance.c.dag_run_id,
                task_instance.c.task_id,
                task_instance.c.map_index,
                task_instance.c.state,
                task_instance.c.try_number,
                task_instance.c.queued_at,
                task_instance.c.start_date,
                task_instance.c.end_date,
                newest_try_id().label("try_id"),
            )
            .where(task_instance.c.dag_run_id.in_(list(run_pks)))
            .order_by(
                task_instance.c.dag_run_id, task_instance.c.task_id, task_instance.c.map_index
            )
        ),
    )


@dataclass(frozen=True, slots=True)
class SiblingTry:
    """One try of a task instance, for the links between its tries."""

    id: int
    try_number: int
    state: str


def sibling_tries(conn: Connection, task_instance_id: int) -> list[SiblingTry]:
    """Every try of one task instance, by try number: links between a task's tries."""
    return all_as(
        SiblingTry,
        conn.execute(
            select(task_try.c.id, task_try.c.try_number, task_try.c.state)
            .where(task_try.c.task_instance_id == task_instance_id)
            .order_by(task_try.c.try_number)
        ),
    )
