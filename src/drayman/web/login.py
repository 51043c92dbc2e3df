"""GET/POST /login and POST /logout: the only way a browser gets (and drops) a session.

Login goes through `auth.users.authenticate` (same answer and time for every failure, rate
limited per username and per (username, client address), at most `login_check_slots`
password checks at once: more get a quick 429). The client address is the peer's, or from
X-Forwarded-For behind a trusted proxy (`web.client_address`). The form is plain HTML: no
script is needed to log in. There is no session yet to derive a CSRF token from, so a login
POST from another origin is refused by its Origin header instead (browsers send it on every
cross-origin POST).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from drayman.auth import sessions, users
from drayman.exceptions import InvalidCredentials, TooManyAttempts
from drayman.web.client_address import client_address
from drayman.web.errors import ApiError
from drayman.web.security import SESSION_COOKIE, Caller, caller, cookie_is_secure
from drayman.web.state import web_state
from drayman.web.templating import templates

router = APIRouter()

MAX_FIELD = 2048  # a username or password longer than this is refused unread


@router.get("/login")
def login_page(request: Request, next: str = "/") -> Response:
    return _form(request, _safe_next(next), error=None, status=200)


@router.post("/login")
async def login(
    request: Request,
    username: Annotated[str, Form(max_length=MAX_FIELD)] = "",
    password: Annotated[str, Form(max_length=MAX_FIELD)] = "",
    next: Annotated[str, Form(max_length=MAX_FIELD)] = "/",
) -> Response:
    _refuse_cross_origin(request)
    state = web_state(request)
    target = _safe_next(next)
    address = client_address(request, state.trusted_proxies)
    try:
        user = await run_in_threadpool(
            users.authenticate,
            state.store,
            state.passwords,
            username,
            password,
            address,
            state.store.now(),
            state.login_limits,
            state.login_gate,
        )
    except InvalidCredentials as exc:
        return _form(request, target, error=str(exc), status=401, username=username)
    except TooManyAttempts as exc:
        response = _form(request, target, error=str(exc), status=429, username=username)
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    session = await run_in_threadpool(sessions.create, state.store, user, state.store.now())
    response = RedirectResponse(target, status_code=303)
    _set_cookie(request, response, session.token, session.expires_at)
    return response


@router.post("/logout")
async def logout(request: Request, who: Annotated[Caller, Depends(caller)]) -> Response:
    """End this session (the CSRF check in `caller` keeps other sites from logging you out)."""
    if who.session_token is not None:
        await run_in_threadpool(sessions.revoke, web_state(request).store, who.session_token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
    return response


def _form(
    request: Request, target: str, *, error: str | None, status: int, username: str = ""
) -> Response:
    return templates.TemplateResponse(
        request,
        "login.html",
        {"next": target, "error": error, "username": username[:200]},
        status_code=status,
    )


def _set_cookie(request: Request, response: Response, token: str, expires: datetime) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        expires=expires,
        path="/",
        httponly=True,
        samesite="lax",
        secure=cookie_is_secure(request),
    )


def _safe_next(target: str) -> str:
    """Only a path on this site: `next=https://evil.example` must not redirect away."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(ord(c) < 32 for c in target):
        return "/"
    return target


def _refuse_cross_origin(request: Request) -> None:
    origin = request.headers.get("origin")
    if origin is None:  # not sent by a same-origin form in older browsers, nor by scripts
        return
    if urlsplit(origin).netloc != request.url.netloc:
        raise ApiError(403, "csrf", "login refused: the form was posted from another site")
