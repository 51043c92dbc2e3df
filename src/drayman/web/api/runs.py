"""/api/v1/dags/{dag_id}/runs: list, trigger (conf checked against params), one run, clear."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from drayman import run_creation
from drayman.auth.roles import Action
from drayman.auth.users import User
from drayman.conf import ConfLimits
from drayman.states import RunState
from drayman.store import actions, audit
from drayman.store.audit import AuditAction
from drayman.store.engine import Connection
from drayman.web import reads
from drayman.web.api import models
from drayman.web.api.common import ERROR_RESPONSES, paging, state_of
from drayman.web.params import DagId, RunId, UtcInstant
from drayman.web.reads import Paging
from drayman.web.security import actor, audit_actor, require
from drayman.web.state import WebState

router = APIRouter(tags=["runs"], responses=ERROR_RESPONSES)

Reader = Annotated[User, Depends(require(Action.READ))]


@router.get("/dags/{dag_id}/runs", response_model=models.RunPage)
def list_runs(
    request: Request,
    _user: Reader,
    dag_id: DagId,
    page: Annotated[Paging, Depends(paging)],
    state: RunState | None = None,
    since: Annotated[UtcInstant | None, Query(description="logical date from (inclusive)")] = None,
    until: Annotated[UtcInstant | None, Query(description="logical date to (exclusive)")] = None,
) -> dict[str, object]:
    """A DAG's runs, newest first; filter by `state` and a logical-date range (naive = UTC)."""
    return reads.run_list(
        state_of(request).store,
        dag_id,
        state=None if state is None else state.value,
        since=since,
        until=until,
        paging=page,
    )


@router.post("/dags/{dag_id}/runs", response_model=models.Run, status_code=201)
def trigger_run(
    request: Request,
    user: Annotated[User, Depends(require(Action.TRIGGER))],
    dag_id: DagId,
    body: models.TriggerBody,
) -> dict[str, object]:
    """Start a manual run of the DAG's newest version with `conf`, checked like the CLI's and
    the pages' (`drayman.conf`: a JSON object within the size and depth caps, no NUL or lone
    surrogate, each param of its type; 422 naming the field, e.g. `conf.rows`). A `run_id` of
    your own may not take a reserved prefix (`scheduled__`, `backfill__`) or hold `..`
    (422); 409 if it is taken."""
    state = state_of(request)
    now = state.store.now()
    who = audit_actor(request, user)
    with state.store.begin() as conn:
        run_id = run_creation.trigger(
            conn,
            dag_id,
            conf=body.conf,
            triggered_by=actor(user),
            now=now,
            run_id=body.run_id,
            limits=ConfLimits.of(state.settings),
        )
        audit.record_trigger(conn, who, dag_id, run_id, body.conf, now)
    state.waker.wake()
    return reads.run_detail(state.store, dag_id, run_id)


@router.get("/dags/{dag_id}/runs/{run_id}", response_model=models.Run)
def get_run(request: Request, _user: Reader, dag_id: DagId, run_id: RunId) -> dict[str, object]:
    """One run: state, conf, params, bundle version, who triggered it, dates."""
    return reads.run_detail(state_of(request).store, dag_id, run_id)


@router.post("/dags/{dag_id}/runs/{run_id}/clear", response_model=models.ActionResult)
def clear_run(
    request: Request,
    user: Annotated[User, Depends(require(Action.CLEAR))],
    dag_id: DagId,
    run_id: RunId,
    body: models.ClearRunBody | None = None,
) -> dict[str, object]:
    """Clear every task of a run (or only the failed ones) so it runs again."""
    options = body or models.ClearRunBody()

    def clear(conn: Connection, now: datetime, dry: bool) -> list[actions.TIKey]:
        return actions.clear_run(
            conn,
            dag_id,
            run_id,
            only_failed=options.only_failed,
            dry_run=dry,
            now=now,
            by=actor(user),
        )

    event = audit.Event(
        audit_actor(request, user),
        AuditAction.RUN_CLEAR,
        *audit.run_object(dag_id, run_id),
        {"only_failed": options.only_failed},
    )
    keys = apply(state_of(request), clear, dry_run=options.dry_run, event=event)
    return action_result(dag_id, run_id, options.dry_run, keys)


def apply(
    state: WebState, action: Any, *, dry_run: bool, event: audit.Event
) -> list[actions.TIKey]:
    """Run a store action in one transaction with its audit event (a read for a dry run,
    which is not audited) and wake the scheduler."""
    if dry_run:
        with state.store.read() as conn:
            keys: list[actions.TIKey] = action(conn, state.store.now(), True)
        return keys
    with state.store.begin() as conn:
        now = state.store.now()
        keys = action(conn, now, False)
        audit.record_event(conn, event, now, task_instances=len(keys))
    if keys:
        state.waker.wake()
    return keys


def action_result(
    dag_id: str, run_id: str, dry_run: bool, keys: list[actions.TIKey]
) -> dict[str, object]:
    """The shape of `drayman tasks clear --json`."""
    return {
        "dag_id": dag_id,
        "run_id": run_id,
        "dry_run": dry_run,
        "task_instances": [{"task_id": k.task_id, "map_index": k.map_index} for k in keys],
    }
