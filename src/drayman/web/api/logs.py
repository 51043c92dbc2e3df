"""/api/v1/tries/{try_id}: one try, and its log in pages of chunks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from drayman.auth.roles import Action
from drayman.auth.users import User
from drayman.web import log_chunks, reads
from drayman.web.api import models
from drayman.web.api.common import ERROR_RESPONSES, state_of
from drayman.web.params import INT_MAX, TryId
from drayman.web.security import require

router = APIRouter(tags=["logs"], responses=ERROR_RESPONSES)

Reader = Annotated[User, Depends(require(Action.READ))]


@router.get("/tries/{try_id}", response_model=models.TryDetail)
def get_try(request: Request, _user: Reader, try_id: TryId) -> dict[str, object]:
    """One try with the DAG, run and task it belongs to."""
    return reads.try_detail(state_of(request).store, try_id)


@router.get("/tries/{try_id}/log", response_model=models.LogPage)
def get_log(
    request: Request,
    _user: Reader,
    try_id: TryId,
    after_seq: Annotated[int, Query(ge=-1, le=INT_MAX)] = -1,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, object]:
    """Log chunks after `after_seq` (start at -1; pass `next_after_seq` back to go on, and
    poll it while `finished` is false to follow a running try). Chunks come from the
    database when a worker shipped them, else from the local log file in 64 KiB slices."""
    state = state_of(request)
    return log_chunks.log_page(state.store, state.settings, try_id, after_seq, limit)
