"""What the web reads about DAGs, runs, task instances and tries: filtered, paged lists.

Every list is one page (`limit`, `offset`) plus its total, never the whole history: the
history grows for years and a page must cost the same on its first day and its thousandth.
Orders match the indexes in `schema.py` (a DAG's runs by `(dag_id, logical_date)`; a run's
task instances by `(dag_run_id, task_id, map_index)`; a task instance's tries by
`(task_instance_id, try_number)`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic

from sqlalchemy import Connection, Select, func, select

from drayman.exceptions import NotFoundError
from drayman.store.rows import DagRow, DagRunRow, R, TaskInstanceRow, TryRow, all_as, one_as
from drayman.store.schema import dag, dag_run, serialized_dag, task_instance, task_try


@dataclass(frozen=True)
class Page(Generic[R]):
    """One page of rows and how many rows match in all."""

    rows: list[R]
    total: int


def _page(conn: Connection, query: Select[Any], kind: type[R], limit: int, offset: int) -> Page[R]:
    total = conn.execute(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = all_as(kind, conn.execute(query.limit(limit).offset(offset)))
    return Page(rows, int(total.scalar_one()))


def page_dags(
    conn: Connection,
    *,
    tag: str | None = None,
    search: str | None = None,
    paused: bool | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page[DagRow]:
    """Active DAGs by id; `tag` matches one tag exactly, `search` a part of the id (any case)."""
    query = select(dag).where(dag.c.is_active.is_(True)).order_by(dag.c.dag_id)
    if tag:
        # tags are a JSON list in a text column: match the quoted tag, LIKE wildcards escaped
        query = query.where(dag.c.tags.contains(json.dumps(tag), autoescape=True))
    if search:
        query = query.where(func.lower(dag.c.dag_id).contains(search.lower(), autoescape=True))
    if paused is not None:
        query = query.where(dag.c.is_paused.is_(paused))
    return _page(conn, query, DagRow, limit, offset)


def page_runs(
    conn: Connection,
    dag_id: str,
    *,
    state: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page[DagRunRow]:
    """A DAG's runs, newest logical date first; `since` inclusive, `until` exclusive."""
    query = (
        select(dag_run)
        .where(dag_run.c.dag_id == dag_id)
        .order_by(dag_run.c.logical_date.desc(), dag_run.c.id.desc())
    )
    if state:
        query = query.where(dag_run.c.state == state)
    if since is not None:
        query = query.where(dag_run.c.logical_date >= since)
    if until is not None:
        query = query.where(dag_run.c.logical_date < until)
    return _page(conn, query, DagRunRow, limit, offset)


@dataclass(frozen=True, slots=True)
class RecentRun:
    """What the DAGs page shows of one recent run."""

    run_id: str
    state: str
    logical_date: datetime
    run_type: str


def recent_runs(
    conn: Connection, dag_ids: Sequence[str], per_dag: int
) -> dict[str, list[RecentRun]]:
    """The newest `per_dag` runs of each DAG (the DAGs page's run-state strip): one indexed
    query per DAG, so a page of 50 DAGs never scans anybody's whole history."""
    found: dict[str, list[RecentRun]] = {}
    for dag_id in dag_ids:
        found[dag_id] = all_as(
            RecentRun,
            conn.execute(
                select(
                    dag_run.c.run_id, dag_run.c.state, dag_run.c.logical_date, dag_run.c.run_type
                )
                .where(dag_run.c.dag_id == dag_id)
                .order_by(dag_run.c.logical_date.desc(), dag_run.c.id.desc())
                .limit(per_dag)
            ),
        )
    return found


def task_instances_of_run(
    conn: Connection, run_pk: int, limit: int, offset: int
) -> Page[TaskInstanceRow]:
    """A run's task instances in task order (mapped elements by index)."""
    query = (
        select(task_instance)
        .where(task_instance.c.dag_run_id == run_pk)
        .order_by(task_instance.c.task_id, task_instance.c.map_index)
    )
    return _page(conn, query, TaskInstanceRow, limit, offset)


def tries_of_task(
    conn: Connection, run_pk: int, task_id: str, map_index: int, limit: int, offset: int
) -> Page[TryRow]:
    """Every try of one task instance, first try first; NotFoundError if the run lacks it."""
    ti_id = conn.execute(
        select(task_instance.c.id).where(
            task_instance.c.dag_run_id == run_pk,
            task_instance.c.task_id == task_id,
            task_instance.c.map_index == map_index,
        )
    ).scalar_one_or_none()
    if ti_id is None:
        label = task_id if map_index < 0 else f"{task_id}[{map_index}]"
        raise NotFoundError(f"the run has no task instance {label!r}")
    query = (
        select(task_try).where(task_try.c.task_instance_id == ti_id).order_by(task_try.c.try_number)
    )
    return _page(conn, query, TryRow, limit, offset)


@dataclass(frozen=True, slots=True)
class TryDetail(TryRow):
    """A try with what the API and the try page show of its task instance and run."""

    task_id: str
    map_index: int
    ti_state: str
    ti_try_number: int
    max_tries: int
    dag_id: str
    run_id: str
    run_state: str
    bundle_version: str


def get_try(conn: Connection, try_id: int) -> TryDetail:
    """One try with its task instance and run: what the API and the try page show."""
    row = conn.execute(
        select(
            task_try,
            task_instance.c.task_id,
            task_instance.c.map_index,
            task_instance.c.state.label("ti_state"),
            task_instance.c.try_number.label("ti_try_number"),
            task_instance.c.max_tries,
            dag_run.c.dag_id,
            dag_run.c.run_id,
            dag_run.c.state.label("run_state"),
            dag_run.c.bundle_version,
        )
        .join(task_instance, task_instance.c.id == task_try.c.task_instance_id)
        .join(dag_run, dag_run.c.id == task_instance.c.dag_run_id)
        .where(task_try.c.id == try_id)
    ).first()
    if row is None:
        raise NotFoundError(f"no try with id {try_id}")
    return one_as(TryDetail, row)


@dataclass(frozen=True, slots=True)
class CodeVersion:
    """A bundle version that defines a DAG, and when it was stored."""

    bundle_version: str
    created_at: datetime


def code_versions(conn: Connection, dag_id: str, limit: int = 50) -> list[CodeVersion]:
    """The bundle versions that define `dag_id`, newest first (the code view's picker)."""
    return all_as(
        CodeVersion,
        conn.execute(
            select(serialized_dag.c.bundle_version, serialized_dag.c.created_at)
            .where(serialized_dag.c.dag_id == dag_id)
            .order_by(serialized_dag.c.created_at.desc(), serialized_dag.c.id.desc())
            .limit(limit)
        ),
    )
