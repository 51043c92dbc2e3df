"""/api/v1/dags/{dag_id}/runs: list, trigger (conf checked against params), one run, clear."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import Connection

from drayman.auth.roles import Action
from drayman.auth.users import User
from drayman.conf import validate_conf
from drayman.exceptions import ParamsError
from drayman.scheduler import runs as run_creation
from drayman.states import RunState
from drayman.store import actions, audit
from drayman.store import dags as dag_store
from drayman.store.audit import AuditAction
from drayman.web import reads
from drayman.web.api import models
from drayman.web.api.common import (
    ERROR_RESPONSES,
    DagId,
    RunId,
    paging,
    state_of,
)
from drayman.web.errors import ApiError
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
    since: Annotated[datetime | None, Query(description="logical date from (inclusive)")] = None,
    until: Annotated[datetime | None, Query(description="logical date to (exclusive)")] = None,
) -> dict[str, object]:
    """A DAG's runs, newest first; filter by `state` and a logical-date range (naive = UTC)."""
    return reads.run_list(
        state_of(request).store,
        dag_id,
        state=None if state is None else state.value,
        since=_utc(since),
        until=_utc(until),
        paging=page,
    )


@router.post("/dags/{dag_id}/runs", response_model=models.Run, status_code=201)
def trigger_run(
    request: Request,
    user: Annotated[User, Depends(require(Action.TRIGGER))],
    dag_id: DagId,
    body: models.TriggerBody,
) -> dict[str, object]:
    """Start a manual run of the DAG's newest version with `conf`, validated against its
    params (422 naming `conf.<param>`); 409 if `run_id` is taken."""
    state = state_of(request)
    now = state.store.now()
    who = audit_actor(request, user)
    try:
        with state.store.begin() as conn:
            run_id = run_creation.trigger(
                conn,
                dag_id,
                conf=body.conf,
                triggered_by=actor(user),
                now=now,
                run_id=body.run_id,
            )
            audit.record_trigger(conn, who, dag_id, run_id, body.conf, now)
    except ParamsError as exc:
        raise ApiError(
            422, "invalid_conf", str(exc), _bad_param(state, dag_id, body.conf)
        ) from None
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


def _bad_param(state: WebState, dag_id: str, conf: Mapping[str, Any]) -> str:
    """Which param the conf got wrong: each is checked alone against the DAG's spec."""
    with state.store.read() as conn:
        row = dag_store.get_dag(conn, dag_id)
        spec = dag_store.load_spec(conn, dag_id, row.bundle_version)
    for name, param in spec.params.items():
        try:
            validate_conf({name: param}, conf)
        except ParamsError:
            return f"conf.{name}"
    return "conf"


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
