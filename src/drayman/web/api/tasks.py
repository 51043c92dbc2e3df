"""/api/v1/dags/{dag_id}/runs/{run_id}/tasks: task instances, tries, clear, mark, cancel."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from drayman.auth.roles import Action
from drayman.auth.users import User
from drayman.states import TIState
from drayman.store import actions, audit
from drayman.store.audit import AuditAction
from drayman.store.engine import Connection
from drayman.web import reads
from drayman.web.api import models
from drayman.web.api.common import ERROR_RESPONSES, paging, state_of
from drayman.web.api.runs import action_result, apply
from drayman.web.params import DagId, MapIndex, RunId, TaskId
from drayman.web.reads import Paging
from drayman.web.security import actor, audit_actor, require

router = APIRouter(tags=["tasks"], responses=ERROR_RESPONSES)

Reader = Annotated[User, Depends(require(Action.READ))]


@router.get("/dags/{dag_id}/runs/{run_id}/tasks", response_model=models.TaskInstancePage)
def list_task_instances(
    request: Request,
    _user: Reader,
    dag_id: DagId,
    run_id: RunId,
    page: Annotated[Paging, Depends(paging)],
) -> dict[str, object]:
    """The run's task instances with their states, in task order."""
    return reads.task_instances(state_of(request).store, dag_id, run_id, page)


@router.get("/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/tries", response_model=models.TryPage)
def list_tries(
    request: Request,
    _user: Reader,
    dag_id: DagId,
    run_id: RunId,
    task_id: TaskId,
    page: Annotated[Paging, Depends(paging)],
    map_index: MapIndex = -1,
) -> dict[str, object]:
    """Every try of one task instance (`map_index` for an element of a mapped task)."""
    return reads.tries(state_of(request).store, dag_id, run_id, task_id, map_index, page)


@router.post(
    "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/clear", response_model=models.ActionResult
)
def clear_task(
    request: Request,
    user: Annotated[User, Depends(require(Action.CLEAR))],
    dag_id: DagId,
    run_id: RunId,
    task_id: TaskId,
    body: models.ClearTaskBody | None = None,
) -> dict[str, object]:
    """Clear the task (with its `downstream` / `upstream` tasks, `only_failed`) so it reruns."""
    options = body or models.ClearTaskBody()

    def clear(conn: Connection, now: datetime, dry: bool) -> list[actions.TIKey]:
        return actions.clear_task_instances(
            conn,
            dag_id,
            run_id,
            [task_id],
            downstream=options.downstream,
            upstream=options.upstream,
            only_failed=options.only_failed,
            map_index=options.map_index,
            dry_run=dry,
            now=now,
            by=actor(user),
        )

    event = audit.Event(
        audit_actor(request, user),
        AuditAction.TASK_CLEAR,
        *audit.run_object(dag_id, run_id, task_id),
        options.model_dump(exclude={"dry_run"}),
    )
    keys = apply(state_of(request), clear, dry_run=options.dry_run, event=event)
    return action_result(dag_id, run_id, options.dry_run, keys)


@router.post(
    "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/mark", response_model=models.ActionResult
)
def mark_task(
    request: Request,
    user: Annotated[User, Depends(require(Action.MARK))],
    dag_id: DagId,
    run_id: RunId,
    task_id: TaskId,
    body: models.MarkTaskBody,
) -> dict[str, object]:
    """Mark the task (and its `downstream` / `upstream` tasks) success or failed."""

    def mark(conn: Connection, now: datetime, dry: bool) -> list[actions.TIKey]:
        return actions.mark_task_instances(
            conn,
            dag_id,
            run_id,
            [task_id],
            state=TIState(body.state),
            downstream=body.downstream,
            upstream=body.upstream,
            map_index=body.map_index,
            dry_run=dry,
            now=now,
            by=actor(user),
        )

    event = audit.Event(
        audit_actor(request, user),
        AuditAction.TASK_MARK,
        *audit.run_object(dag_id, run_id, task_id),
        body.model_dump(exclude={"dry_run"}),
    )
    keys = apply(state_of(request), mark, dry_run=body.dry_run, event=event)
    return action_result(dag_id, run_id, body.dry_run, keys)


@router.post(
    "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/cancel", response_model=models.ActionResult
)
def cancel_task(
    request: Request,
    user: Annotated[User, Depends(require(Action.CANCEL))],
    dag_id: DagId,
    run_id: RunId,
    task_id: TaskId,
    body: models.CancelTaskBody | None = None,
) -> dict[str, object]:
    """Stop the task's queued or running try: its process is killed and the task instance
    fails without further retries (clear it to run it again). 409 when it is not queued or
    running."""
    options = body or models.CancelTaskBody()

    def cancel(conn: Connection, now: datetime, dry: bool) -> list[actions.TIKey]:
        return actions.cancel_task_instance(
            conn,
            dag_id,
            run_id,
            task_id,
            map_index=options.map_index,
            dry_run=dry,
            now=now,
            by=actor(user),
        )

    event = audit.Event(
        audit_actor(request, user),
        AuditAction.TASK_CANCEL,
        *audit.run_object(dag_id, run_id, task_id),
        {"map_index": options.map_index},
    )
    keys = apply(state_of(request), cancel, dry_run=options.dry_run, event=event)
    return action_result(dag_id, run_id, options.dry_run, keys)
