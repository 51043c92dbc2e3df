"""Stable error bodies: `{"error": {"code", "message", "field"}}` for /api, a page otherwise.

Every error drayman raises on purpose maps to one status here, so a handler only raises;
nothing a client sends may reach a 500. The HTML side (401 redirects to /login, other errors
render `error.html`) lives in `app.py`, next to the middleware.
"""

from __future__ import annotations

from typing import Any

from drayman.exceptions import (
    AuthError,
    ConfigError,
    ConflictError,
    DagDefinitionError,
    DraymanError,
    InvalidCredentials,
    NotFoundError,
    ParamsError,
    PermissionDenied,
    RunIdError,
    TooManyAttempts,
)


class ApiError(Exception):
    """An error answered as it is: status, a stable code, a message and the field at fault."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


# (exception class, status, code), most specific first
_DRAYMAN_ERRORS: tuple[tuple[type[DraymanError], int, str], ...] = (
    (NotFoundError, 404, "not_found"),
    (ConflictError, 409, "conflict"),
    (ParamsError, 422, "invalid_conf"),
    (RunIdError, 422, "invalid"),
    (DagDefinitionError, 422, "invalid"),
    (ConfigError, 400, "bad_request"),
    (InvalidCredentials, 401, "unauthenticated"),
    (TooManyAttempts, 429, "too_many_attempts"),
    (PermissionDenied, 403, "forbidden"),
    (AuthError, 400, "bad_request"),
)

STATUS_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_attempts",
}


def from_drayman(exc: DraymanError, field: str | None = None) -> ApiError:
    """The ApiError for an error drayman raised on purpose (unknown kinds are a 400); the
    field is `field`, else the one the error names (a ParamsError's `conf.rows`)."""
    field = field or _field_of(exc)
    for kind, status, code in _DRAYMAN_ERRORS:
        if isinstance(exc, kind):
            return ApiError(status, code, str(exc), field)
    return ApiError(400, "bad_request", str(exc), field)


def _field_of(exc: DraymanError) -> str | None:
    if isinstance(exc, ParamsError):
        return exc.field
    if isinstance(exc, RunIdError):
        return "run_id"
    return None


def body(error: ApiError) -> dict[str, Any]:
    return {"error": {"code": error.code, "message": error.message, "field": error.field}}


def field_of(loc: tuple[Any, ...] | list[Any]) -> str | None:
    """A pydantic error location as a dotted field name, without the 'body'/'query' prefix."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie"}:
        parts = parts[1:]
    return ".".join(parts) or None
