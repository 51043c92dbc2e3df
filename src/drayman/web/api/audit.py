"""/api/v1/audit: the audit trail, newest first, for admins only.

No `total` in the page (unlike other lists): the trail only grows, and counting it all for
every page would be a full scan. Ask for the next page until one comes back short.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from drayman.auth.roles import Action
from drayman.auth.users import User
from drayman.store import audit as audit_store
from drayman.store.schema import USERNAME
from drayman.web.api.common import ERROR_RESPONSES, paging, state_of
from drayman.web.params import UtcInstant
from drayman.web.reads import Paging
from drayman.web.security import require

router = APIRouter(tags=["audit"], responses=ERROR_RESPONSES)

PRINTABLE = r"^[^\x00-\x1f\x7f]*$"  # a NUL would be a database error on PostgreSQL


class AuditEvent(BaseModel):
    id: int
    created_at: datetime
    actor: str
    source: str  # the client's address, or "cli"
    action: str  # e.g. "login.failure", "task.clear", "user.set_role"
    object_type: str  # dag | run | task | user | token | pool, or "" for none
    object_id: str
    detail: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditEvent]
    limit: int
    offset: int


@router.get("/audit", response_model=AuditPage)
def list_audit(
    request: Request,
    _user: Annotated[User, Depends(require(Action.READ_AUDIT))],
    page: Annotated[Paging, Depends(paging)],
    actor: Annotated[str | None, Query(max_length=USERNAME, pattern=PRINTABLE)] = None,
    action: Annotated[
        str | None,
        Query(
            max_length=40, pattern=PRINTABLE, description='e.g. "task.clear", or "user." for all'
        ),
    ] = None,
    since: Annotated[UtcInstant | None, Query(description="from (inclusive; naive = UTC)")] = None,
    until: Annotated[UtcInstant | None, Query(description="to (exclusive; naive = UTC)")] = None,
) -> dict[str, object]:
    """Audit events (logins, run actions, user and token changes), newest first; admins."""
    with state_of(request).store.read() as conn:
        rows = audit_store.events(
            conn,
            actor=actor,
            action=action,
            since=since,
            until=until,
            limit=page.limit,
            offset=page.offset,
        )
    items = [audit_store.as_document(r) for r in rows]
    return {"items": items, "limit": page.limit, "offset": page.offset}
