"""Rendering a page: the shared template context (who is asking, what they may do) and filters.

Every page gets `user` and `can` (which actions the user's role allows), so templates hide
the forms a viewer may not use; the server refuses those actions anyway (`security.require`).
Filters format times (UTC, or a DAG's own timezone), durations and URL parts: a DAG id goes
into a URL through `u`, which escapes "/", "?" and "#" too, so a hostile id cannot change the
route it appears in.
"""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse

from drayman.auth.roles import Action, allows
from drayman.auth.users import User
from drayman.web.pages import grid
from drayman.web.templating import templates

ACTIONS = (Action.TRIGGER, Action.CLEAR, Action.MARK, Action.PAUSE, Action.CANCEL)


def page(
    request: Request, user: User, template: str, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """Render `template` with the shared context."""
    response: HTMLResponse = templates.TemplateResponse(
        request,
        template,
        {"user": user, "can": permissions(user), **context},
        status_code=status_code,
    )
    return response


def permissions(user: User) -> SimpleNamespace:
    """`can.trigger`, `can.clear`, ... for templates (a namespace, not a dict: in Jinja,
    `can.clear` on a dict would find the dict's `clear` method, which is always true)."""
    return SimpleNamespace(**{action.value: allows(user.role, action) for action in ACTIONS})


def fragment(request: Request, template: str, **context: Any) -> str:
    """A template's text without a response around it (live updates send it in JSON)."""
    body: str = templates.get_template(template).render(request=request, **context)
    return body


def u(text: Any) -> str:
    """`text` as one URL path segment or query value."""
    return quote(str(text), safe="")


def utc(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def local(value: datetime | None, timezone: str) -> str:
    """`value` in a DAG's timezone, with the zone's abbreviation (PST, CEST)."""
    if value is None:
        return ""
    try:
        zone = ZoneInfo(timezone)
    except (ValueError, KeyError):
        return utc(value)
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def duration(start: datetime | None, end: datetime | None, now: datetime | None = None) -> str:
    """Seconds below a minute (1.25s), then 2m05s, then 1h02m; "" before it started."""
    if start is None:
        return ""
    finish = end or now
    if finish is None:
        return ""
    seconds = max((finish - start).total_seconds(), 0.0)
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def short(version: str | None) -> str:
    return (version or "")[:12]


templates.env.filters.update(u=u, utc=utc, local=local, short=short)
templates.env.globals.update(
    duration=duration, grid_code=grid.code, grid_states=tuple(grid.STATE_CODES)
)
