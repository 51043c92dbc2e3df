"""Who is asking, and may they do this: sessions, API tokens, roles and CSRF.

A request is authenticated by `Authorization: Bearer <API token>` (scripts, CI) or by the
session cookie a login set (browsers). The cookie is HttpOnly, SameSite=Lax, and Secure when
the request came over https.

CSRF: a browser sends the cookie with any request a hostile page makes it send, so every
unsafe (non GET/HEAD/OPTIONS) request authenticated by the cookie must also carry a token
the hostile page cannot read: HMAC(secret key, session token), in the form field
`csrf_token` or the header `X-CSRF-Token`. A request with a bearer token needs none: a
browser never adds that header by itself.

Routes declare what they do with `Depends(require(Action.X))`; the object they act on is named
by the URL only (request bodies forbid unknown fields), so URL and body cannot disagree.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from drayman.auth import sessions, tokens
from drayman.auth.roles import Action, allows
from drayman.auth.users import User
from drayman.exceptions import InvalidCredentials
from drayman.store.audit import Actor
from drayman.web.client_address import client_address
from drayman.web.errors import ApiError
from drayman.web.state import WebState, web_state

SESSION_COOKIE = "drayman_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


@dataclass(frozen=True)
class Caller:
    """The authenticated user and how they proved it (a session token, or None for a bearer)."""

    user: User
    session_token: str | None


def csrf_token_for(request: Request) -> str:
    """The CSRF token to embed in this session's forms ("" without a session cookie)."""
    return _csrf_token(web_state(request).secret_key, request.cookies.get(SESSION_COOKIE, ""))


def _csrf_token(secret_key: str, session_token: str) -> str:
    if not session_token:
        return ""
    message = b"drayman-csrf:" + session_token.encode()
    return hmac.new(secret_key.encode(), message, hashlib.sha256).hexdigest()


async def caller(request: Request) -> Caller:
    """Authenticate the request (401 otherwise) and enforce CSRF on cookie-borne writes."""
    cached: Caller | None = getattr(request.state, "caller", None)
    if cached is not None:
        return cached
    found = await _authenticate(request)
    if found.session_token is not None and request.method not in SAFE_METHODS:
        await _check_csrf(request, found.session_token)
    request.state.caller = found
    return found


async def current_user(request: Request) -> User:
    """FastAPI dependency: the user making the request, or a 401."""
    return (await caller(request)).user


def require(action: Action) -> Callable[[Request], Awaitable[User]]:
    """FastAPI dependency factory: the current user, if their role allows `action` (else 403)."""

    async def dependency(request: Request) -> User:
        user = await current_user(request)
        if not allows(user.role, action):
            verb = action.value.replace("_", " ")
            raise ApiError(403, "forbidden", f"role {user.role} may not {verb}")
        return user

    dependency.__name__ = f"require_{action.value}"
    return dependency


async def _authenticate(request: Request) -> Caller:
    state = web_state(request)
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthenticated", "use 'Authorization: Bearer <API token>'")
        try:
            user = await run_in_threadpool(tokens.verify, state.store, token.strip(), _now(state))
        except InvalidCredentials as exc:
            raise ApiError(401, "unauthenticated", str(exc)) from None
        return Caller(user, None)
    session_token = request.cookies.get(SESSION_COOKIE)
    if session_token:
        user_or_none = await run_in_threadpool(
            sessions.resolve, state.store, session_token, _now(state)
        )
        if user_or_none is not None:
            return Caller(user_or_none, session_token)
    raise ApiError(401, "unauthenticated", "log in, or send 'Authorization: Bearer <API token>'")


async def _check_csrf(request: Request, session_token: str) -> None:
    expected = _csrf_token(web_state(request).secret_key, session_token)
    given = request.headers.get(CSRF_HEADER, "")
    if not given and request.headers.get("content-type", "").startswith(_FORM_TYPES):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        given = value if isinstance(value, str) else ""
    if not given or not hmac.compare_digest(given, expected):
        raise ApiError(
            403,
            "csrf",
            f"missing or wrong CSRF token: send the form field {CSRF_FIELD!r} "
            f"or the header {CSRF_HEADER!r} (reload the page)",
            CSRF_FIELD,
        )


def cookie_is_secure(request: Request) -> bool:
    """Mark the cookie Secure when the browser reached us over https."""
    return request.url.scheme == "https"


def _now(state: WebState) -> datetime:
    return state.store.now()


def audit_actor(request: Request, user: User) -> Actor:
    """Who acted, for the audit trail: the username and the client's address."""
    return Actor(user.username, client_address(request, web_state(request).trusted_proxies))


def actor(user: User) -> str:
    """Who acted, as a run's `triggered_by` and a fenced-off try's error record it."""
    return f"{user.username} (web)"
