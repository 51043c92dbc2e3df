"""`create_app(settings, store)`: the one ASGI app behind `drayman web` and `standalone`.

It wires the parts and decides nothing itself: middleware (server timing, security headers,
body cap), error handlers (a stable JSON body under /api, a page otherwise: a 401 on a page
sends the browser to /login), static files, the login routes, the JSON API and, when
installed, the HTML pages (`drayman.web.pages.router`).
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from drayman.auth.login_gate import LoginGate
from drayman.auth.passwords import Passwords
from drayman.auth.secret import load_secret_key
from drayman.config import Settings
from drayman.exceptions import DraymanError
from drayman.store.engine import Store
from drayman.wakeup import SchedulerWaker
from drayman.web import errors
from drayman.web.client_address import parse_networks
from drayman.web.errors import ApiError
from drayman.web.middleware import (
    BodyLimit,
    CatchUnexpected,
    RefuseNul,
    SecurityHeaders,
    ServerTiming,
)
from drayman.web.state import WebState
from drayman.web.templating import STATIC_DIR, templates

log = logging.getLogger("drayman.web")

API_PREFIX = "/api/v1"


def create_app(
    settings: Settings,
    store: Store,
    *,
    secret_key: str | None = None,
    passwords: Passwords | None = None,
    max_body_bytes: int = 1024 * 1024,
) -> FastAPI:
    """The web app on this store. `secret_key` defaults to the installation's (see
    auth.secret); tests pass cheap `passwords` costs, never production code."""
    from drayman.web import api, login

    state = WebState(
        settings=settings,
        store=store,
        secret_key=secret_key or load_secret_key(settings.home, os.environ),
        passwords=passwords or Passwords(),
        waker=SchedulerWaker(settings),
        max_body_bytes=max_body_bytes,
        login_gate=LoginGate(settings.login_check_slots or os.cpu_count() or 1),
        trusted_proxies=parse_networks(settings.trusted_proxies),
    )
    app = FastAPI(
        title="drayman",
        version=_version(),
        openapi_url=None,  # served by `_serve_openapi`, to logged-in users only
        docs_url=None,  # the Swagger UI loads from a CDN, which the CSP forbids
        redoc_url=None,
    )
    app.state.web = state
    _install_error_handlers(app)
    app.add_middleware(CatchUnexpected, respond=_unexpected)  # innermost
    app.add_middleware(RefuseNul, respond=_nul_refused)  # reads the body BodyLimit capped
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(SecurityHeaders)  # also on 413s and errors
    app.add_middleware(ServerTiming, store=store)  # outermost: times the others too
    STATIC_DIR.mkdir(exist_ok=True)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(login.router, include_in_schema=False)
    app.include_router(api.health_router)
    app.include_router(api.router, prefix=API_PREFIX)
    _serve_openapi(app)
    _include_pages(app)
    return app


def _serve_openapi(app: FastAPI) -> None:
    """`/api/v1/openapi.json` for any logged-in user (or token): the document lists every
    route and field, which is a map for an attacker, so it is not public. Clients and
    schemathesis load it with a token (`Authorization: Bearer ...`)."""
    from drayman.auth.roles import Action
    from drayman.web.security import require

    async def openapi_document(request: Request) -> Response:
        await require(Action.READ)(request)
        return JSONResponse(app.openapi())

    app.add_api_route(
        f"{API_PREFIX}/openapi.json", openapi_document, methods=["GET"], include_in_schema=False
    )


def _version() -> str:
    from drayman import __version__

    return __version__


def _include_pages(app: FastAPI) -> None:
    """The HTML pages, when their package is there (they are built alongside the API)."""
    try:
        pages = importlib.import_module("drayman.web.pages")
    except ModuleNotFoundError as exc:
        if exc.name != "drayman.web.pages":
            raise
        return
    app.include_router(pages.router, include_in_schema=False)


def is_api(request: Request) -> bool:
    return request.url.path.startswith(API_PREFIX + "/") or request.url.path == "/health"


def _install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(DraymanError, _drayman_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    # any other exception: `CatchUnexpected`, so its 500 still gets the security headers


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(request, exc)


async def _drayman_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DraymanError)
    return error_response(request, errors.from_drayman(exc))


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = exc.errors()
    first: dict[str, Any] = problems[0] if problems else {}
    field = errors.field_of(first.get("loc", ()))
    message = str(first.get("msg", "invalid request"))
    if first.get("type") == "json_invalid":
        return error_response(request, ApiError(400, "bad_json", f"not valid JSON: {message}"))
    where = f"{field}: " if field else ""
    return error_response(request, ApiError(422, "invalid", f"{where}{message}", field))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = errors.STATUS_CODES.get(exc.status_code, "error")
    error = ApiError(exc.status_code, code, str(exc.detail))
    return error_response(request, error, headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("web.unexpected_error path=%s", request.url.path, exc_info=exc)
    return error_response(request, ApiError(500, "internal", "internal error; see the server log"))


async def _nul_refused(request: Request, message: str) -> Response:
    return error_response(request, ApiError(400, "bad_request", message))


def error_response(
    request: Request, error: ApiError, headers: Mapping[str, str] | None = None
) -> Response:
    """JSON for the API; for a page, a redirect to the login (401) or the error page."""
    if is_api(request) or request.url.path.startswith("/static/"):
        return JSONResponse(errors.body(error), status_code=error.status, headers=headers)
    if error.status == 401 and request.method in {"GET", "HEAD"}:
        target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        return RedirectResponse(f"/login?next={target}", status_code=303)
    return templates.TemplateResponse(
        request,
        "error.html",
        {"status": error.status, "code": error.code, "message": error.message},
        status_code=error.status,
        headers=headers,
    )
