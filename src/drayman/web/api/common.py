"""What every API module shares: paging parameters and documented errors (the path and
query types with their bounds are in `web.params`, shared with the pages)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request

from drayman.web.api.models import ErrorBody
from drayman.web.params import Offset
from drayman.web.reads import Paging
from drayman.web.state import WebState, web_state

MAX_LIMIT = 500

_ERRORS = {
    400: "bad request (malformed JSON, bad parameter)",
    401: "not authenticated",
    403: "the role does not allow this, or a missing CSRF token",
    404: "no such DAG, run, task or try",
    409: "the change collides with the current state",
    413: "request body too large",
    422: "a field has a wrong type or value; `field` names it",
}

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text} for status, text in _ERRORS.items()
}


def paging(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    offset: Offset = 0,
) -> Paging:
    """`limit` (1..500, default 50) and `offset` of a list."""
    return Paging(limit, offset)


def state_of(request: Request) -> WebState:
    return web_state(request)
