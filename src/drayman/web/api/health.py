"""GET /health (and /api/v1/health): is the database reachable, is a scheduler alive.

No auth: load balancers and monitors call it. 200 when both are fine, 503 otherwise; the
body says which part is not.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from drayman.web import reads
from drayman.web.state import web_state

router = APIRouter(tags=["health"])
root_router = APIRouter(tags=["health"])


class SchedulerHealth(BaseModel):
    alive: bool
    heartbeat_age_s: float | None


class Health(BaseModel):
    database: str
    scheduler: SchedulerHealth


_RESPONSES: dict[int | str, dict[str, object]] = {
    503: {"model": Health, "description": "the database or the scheduler is not fine"}
}


@router.get("/health", response_model=Health, responses=_RESPONSES)
def api_health(request: Request) -> JSONResponse:
    """Database and scheduler status; no auth."""
    return _answer(request)


@root_router.get("/health", response_model=Health, responses=_RESPONSES)
def health(request: Request) -> JSONResponse:
    """Database and scheduler status; no auth."""
    return _answer(request)


def _answer(request: Request) -> JSONResponse:
    state = web_state(request)
    report = reads.health(state.store, state.settings.heartbeat_timeout_s)
    fine = report["database"] == "ok" and report["scheduler"]["alive"]
    return JSONResponse(report, status_code=200 if fine else 503)
