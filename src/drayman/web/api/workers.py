"""/api/v1/workers and /api/v1/queues: who runs tries, and what waits where."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from drayman.auth.roles import Action
from drayman.auth.users import User
from drayman.web import reads
from drayman.web.api import models
from drayman.web.api.common import ERROR_RESPONSES, paging, state_of
from drayman.web.reads import Paging
from drayman.web.security import require

router = APIRouter(tags=["workers"], responses=ERROR_RESPONSES)

Reader = Annotated[User, Depends(require(Action.READ))]


@router.get("/workers", response_model=models.WorkerPage)
def list_workers(
    request: Request, _user: Reader, page: Annotated[Paging, Depends(paging)]
) -> dict[str, object]:
    """Workers, newest first: host, queues, concurrency, running tries, heartbeat age."""
    return reads.workers(state_of(request).store, page)


@router.get("/queues", response_model=models.QueuePage)
def list_queues(
    request: Request, _user: Reader, page: Annotated[Paging, Depends(paging)]
) -> dict[str, object]:
    """Queues: waiting and running task instances, live workers serving each."""
    state = state_of(request)
    return reads.queues(state.store, state.settings, page)
