"""A try's page ("/tries/{try_id}"): where and how it ran, and its log, paged and followed.

The log comes a page at a time (`logview`); while the try runs, the page's script asks
`log.json` for what follows the position it has, and appends it as text (never as HTML).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse

from drayman.auth.users import User
from drayman.config import Settings
from drayman.store import history
from drayman.store import pages as page_store
from drayman.store.tries import UNFINISHED
from drayman.web.pages import logview
from drayman.web.pages.render import page
from drayman.web.params import LogPos, TryId
from drayman.web.security import current_user
from drayman.web.state import web_state

router = APIRouter()

CurrentUser = Annotated[User, Depends(current_user)]


def log_file(settings: Settings, log_path: str) -> Path | None:
    """The try's local log file, only if it lies under the logs folder."""
    if not log_path:
        return None
    root = settings.logs_folder.resolve()
    path = (root / log_path).resolve()
    return path if path.is_relative_to(root) else None


@router.get("/tries/{try_id}", response_class=HTMLResponse)
def try_page(
    request: Request, try_id: TryId, user: CurrentUser, pos: LogPos = None
) -> HTMLResponse:
    state = web_state(request)
    with state.store.read() as conn:
        row = history.get_try(conn, try_id)
        siblings = page_store.sibling_tries(conn, row.task_instance_id)
        path = log_file(state.settings, row.log_path)
        source = logview.source_of(conn, try_id, path)
        log = logview.read_page(conn, try_id, path, source, pos)
    return page(
        request,
        user,
        "try.html",
        t=row,
        siblings=siblings,
        log=log,
        running=row.state in UNFINISHED,
        exit=_exit(row),
        now=datetime.now(UTC),
    )


def _exit(row: Any) -> str:
    if row.signal:
        return f"killed by signal {row.signal}"
    return "" if row.exit_code is None else f"exit code {row.exit_code}"


@router.get("/tries/{try_id}/log.json")
def log_json(
    request: Request, try_id: TryId, user: CurrentUser, pos: LogPos = None, source: str = ""
) -> JSONResponse:
    """What follows `pos` in the log, and whether the try has ended (then stop asking)."""
    state = web_state(request)
    with state.store.read() as conn:
        row = history.get_try(conn, try_id)  # state first: then the log holds its end
        path = log_file(state.settings, row.log_path)
        found = logview.source_of(conn, try_id, path)
        if source != found:  # the log moved (first chunk shipped): start over from there
            pos = None
        log = logview.read_page(conn, try_id, path, found, pos)
    return JSONResponse(
        {
            "text": log.text,
            "source": log.source,
            "restart": source != found and bool(source),
            "pos": log.pos,
            "more": log.more,
            "ended": row.state not in UNFINISHED,
            "state": row.state,
        },
        headers={"Cache-Control": "no-store"},
    )
