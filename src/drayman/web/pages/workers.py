"""The workers and queues page ("/workers"): who runs tries, and what waits where."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from drayman.auth.users import User
from drayman.web import reads
from drayman.web.pages.render import page
from drayman.web.security import current_user
from drayman.web.state import web_state

router = APIRouter()

WORKERS_SHOWN = 100
QUEUES_SHOWN = 200


@router.get("/workers", response_class=HTMLResponse)
def workers_page(request: Request, user: Annotated[User, Depends(current_user)]) -> HTMLResponse:
    state = web_state(request)
    workers = reads.workers(state.store, reads.Paging(WORKERS_SHOWN, 0))
    queues = reads.queues(state.store, state.settings, reads.Paging(QUEUES_SHOWN, 0))
    return page(request, user, "workers.html", workers=workers, queues=queues)
