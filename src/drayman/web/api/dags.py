"""/api/v1/dags: list, one DAG, pause/unpause, its code; /api/v1/import-errors."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from drayman.auth.roles import Action
from drayman.auth.users import User
from drayman.store import audit
from drayman.store import dags as dag_store
from drayman.store.schema import ID
from drayman.web import reads
from drayman.web.api import models
from drayman.web.api.common import ERROR_RESPONSES, paging, state_of
from drayman.web.params import DagId
from drayman.web.reads import Paging
from drayman.web.security import audit_actor, require

router = APIRouter(tags=["dags"], responses=ERROR_RESPONSES)

Reader = Annotated[User, Depends(require(Action.READ))]


@router.get("/dags", response_model=models.DagPage)
def list_dags(
    request: Request,
    _user: Reader,
    page: Annotated[Paging, Depends(paging)],
    tag: Annotated[str | None, Query(max_length=ID)] = None,
    search: Annotated[str | None, Query(max_length=ID)] = None,
    paused: bool | None = None,
    recent_runs: Annotated[int, Query(ge=0, le=25)] = 0,
) -> dict[str, object]:
    """Active DAGs by id; filter by one `tag`, a `search` in the id, or `paused`. With
    `recent_runs=N` each DAG carries the states of its N newest runs."""
    return reads.dag_list(
        state_of(request).store,
        tag=tag,
        search=search,
        paused=paused,
        paging=page,
        recent=recent_runs,
    )


@router.get("/dags/{dag_id}", response_model=models.DagDetail)
def get_dag(request: Request, _user: Reader, dag_id: DagId) -> dict[str, object]:
    """Schedule, timezone, next runs (local and UTC, DST changes noted), params, tasks, tags."""
    state = state_of(request)
    return reads.dag_detail(state.store, dag_id, state.store.now())


@router.patch("/dags/{dag_id}", response_model=models.DagSummary)
def patch_dag(
    request: Request,
    user: Annotated[User, Depends(require(Action.PAUSE))],
    dag_id: DagId,
    body: models.DagPatch,
) -> dict[str, object]:
    """Pause or unpause (`{"paused": true|false}`); operators and admins."""
    state = state_of(request)
    who = audit_actor(request, user)
    with state.store.begin() as conn:
        now = state.store.now()
        dag_store.set_paused(conn, dag_id, body.paused, now)
        audit.record_pause(conn, who, dag_id, body.paused, now)
        row = dag_store.get_dag(conn, dag_id)
    state.waker.wake()
    return reads.dag_summary(row)


@router.get("/dags/{dag_id}/code", response_model=models.DagCode)
def get_code(
    request: Request,
    _user: Reader,
    dag_id: DagId,
    version: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
) -> dict[str, object]:
    """The DAG file's code at bundle `version` (default: the newest that defines the DAG)."""
    return reads.dag_code(state_of(request).store, dag_id, version)


@router.get("/import-errors", response_model=models.ImportErrorPage)
def import_errors(
    request: Request, _user: Reader, page: Annotated[Paging, Depends(paging)]
) -> dict[str, object]:
    """Files of the newest bundle that failed to import: file, line and message."""
    items = reads.import_errors(state_of(request).store)
    return reads.page(items[page.offset : page.offset + page.limit], len(items), page)
