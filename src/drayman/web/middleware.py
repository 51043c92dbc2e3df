"""The ASGI middlewares that every response goes through: server timing, security headers,
a body cap, NUL characters refused, and the last resort for an unexpected error.

Written as plain ASGI (not BaseHTTPMiddleware) so streaming responses stay streaming, the
body cap holds before any handler buffers a byte, and a context variable set here is seen by
the handler (FastAPI runs sync handlers in its thread pool with a copy of this context).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from urllib.parse import unquote_to_bytes

from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from drayman.store import sql_clock
from drayman.store.engine import Store
from drayman.store.sql_clock import SqlClock

# Everything is served from this origin (no CDN): scripts and styles only from files here,
# no inline script, nothing may frame the UI, forms post only back here.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)


class ServerTiming:
    """`Server-Timing: total;dur=12.3, db;dur=4.5` on every HTTP response: milliseconds at
    the server from the request's arrival here to the response's start, and of that the time
    in SQL (`db`, when `store` is given). Register it outermost so it covers the others.

    The browser's dev tools and `bench/ui.py` read it: the time the server took, without the
    network's. A streamed body's later SQL is not counted: the header is sent before it."""

    def __init__(self, app: ASGIApp, store: Store | None = None) -> None:
        self.app = app
        self.count_sql = store is not None
        if store is not None:
            sql_clock.time_statements(store)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        with sql_clock.counting() as clock:

            async def send_timed(message: Message) -> None:
                if message["type"] == "http.response.start":
                    value = self._value(time.perf_counter() - began, clock)
                    message["headers"] = [*message.get("headers", []), (b"server-timing", value)]
                await send(message)

            await self.app(scope, receive, send_timed)

    def _value(self, total_s: float, clock: SqlClock) -> bytes:
        metrics = [f"total;dur={total_s * 1000:.1f}"]
        if self.count_sql:
            metrics.append(f"db;dur={clock.seconds * 1000:.1f}")
        return ", ".join(metrics).encode()


class SecurityHeaders:
    """Add the security headers to every HTTP response (HSTS too, when served over https)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"
        # every page and API answer may show logs, run conf or params: no browser or proxy
        # cache may keep one (a shared machine's back button, a caching proxy); static files may
        private = not str(scope.get("path", "")).startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                extra = [h for h in SECURITY_HEADERS if h[0] not in present]
                if https:
                    extra.append((b"strict-transport-security", b"max-age=31536000"))
                if private and b"cache-control" not in present:
                    extra.append((b"cache-control", b"no-store"))
                message["headers"] = headers + extra
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimit:
    """Answer 413 to a request body over `max_bytes`, declared or streamed, before the app
    reads it: a huge body must cost the server neither memory nor time."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._too_large(scope, send)
            return
        messages: list[Message] = []
        size = 0
        while True:  # buffer up to the cap (1 MiB by default), then replay to the app
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._too_large(scope, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, send: Send) -> None:
        message = f"request body too large: the limit is {self.max_bytes} bytes"
        if str(scope.get("path", "")).startswith("/api/"):
            content = json.dumps(
                {"error": {"code": "too_large", "message": message, "field": None}}
            ).encode()
            kind = b"application/json"
        else:
            content, kind = message.encode(), b"text/plain; charset=utf-8"
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", kind),
                    (b"content-length", str(len(content)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": content})


class RefuseNul:
    """Answer 400 (through `respond`, so with the usual error body or page) to a request with
    a NUL character anywhere in its path, query string or form body (its bytes, and its values
    as decoded in the charset the client named), before any handler runs.

    No name, id or text drayman keeps may hold one: PostgreSQL refuses NUL in text, a file
    path cannot carry it, and a terminal or log line would be cut at it. One check here, for
    every route, the login form included, instead of one per parameter. Sits inside
    `BodyLimit`, so the form body it reads is already capped."""

    FORM_TYPES = (b"application/x-www-form-urlencoded", b"multipart/form-data")

    def __init__(
        self, app: ASGIApp, respond: Callable[[Request, str], Awaitable[Response]]
    ) -> None:
        self.app = app
        self.respond = respond

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        where = _nul_in_url(scope)
        if where is None and _content_type(scope).startswith(self.FORM_TYPES):
            messages = await _read_body(receive)
            body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
            raw_nul = b"\x00" in body or b"\x00" in unquote_to_bytes(body.replace(b"+", b" "))
            if raw_nul or await _nul_in_parsed_form(scope, list(messages)):
                where = "the form"

            async def replay() -> Message:
                return messages.pop(0) if messages else await receive()

            receive = replay
        if where is None:
            await self.app(scope, receive, send)
            return
        message = f"{where} holds a NUL character (%00 or \\u0000): remove it"
        response = await self.respond(Request(scope), message)
        await response(scope, receive, send)


def _nul_in_url(scope: Scope) -> str | None:
    if "\x00" in str(scope.get("path", "")) or b"%00" in scope.get("raw_path", b""):
        return "the URL path"
    query = scope.get("query_string", b"")
    if b"\x00" in unquote_to_bytes(query.replace(b"+", b" ")):
        return "the query string"
    return None


async def _nul_in_parsed_form(scope: Scope, messages: list[Message]) -> bool:
    """Whether the form, decoded as a handler will see it, holds a NUL. The raw bytes are not
    enough: a multipart body is decoded in the charset the client names, and in UTF-7
    `admin+AAA-` is `admin\x00`. A form the parser refuses is left to the handler's own 400."""

    async def replay() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    try:
        async with Request(scope, replay).form() as form:
            fields = [(key, value) for key, value in form.multi_items() if isinstance(value, str)]
    except (HTTPException, MultiPartException):
        return False
    return any("\x00" in key or "\x00" in value for key, value in fields)


def _content_type(scope: Scope) -> bytes:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            return bytes(value).lower().strip()
    return b""


async def _read_body(receive: Receive) -> list[Message]:
    messages = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


class CatchUnexpected:
    """Answer an exception no handler knew with `respond` (a logged 500 with the usual error
    body), innermost, so that response still goes through the security headers and the
    server timing. Starlette's own last resort sits outside every middleware: its 500s had
    neither. An error after the response started can only end the connection: re-raised."""

    def __init__(
        self, app: ASGIApp, respond: Callable[[Request, Exception], Awaitable[Response]]
    ) -> None:
        self.app = app
        self.respond = respond

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            if started:
                raise
            response = await self.respond(Request(scope), exc)
            await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
