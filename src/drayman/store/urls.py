"""Database URLs read exactly as SQLAlchemy reads them, for callers outside the store.

A password may hold `/`, `@` or `?`; only SQLAlchemy's own parser finds it whole, so the host
side that strips passwords from the settings it hands to warm processes asks here rather than
importing SQLAlchemy (ADR 16).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


def password_of(url: str) -> str | None:
    """The URL's password, None when it has none; ValueError when SQLAlchemy cannot parse it."""
    try:
        return make_url(url).password
    except ArgumentError as exc:
        raise ValueError(f"not a database URL: {exc}") from None


def with_password_replaced(
    url: str, mark: str, drop_query_key: Callable[[str], bool]
) -> str | None:
    """`url` with its password (if any) replaced by `mark` and the query keys `drop_query_key`
    names dropped; None when SQLAlchemy cannot parse it."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    query = {k: v for k, v in parsed.query.items() if not drop_query_key(k)}
    if parsed.password is None and query == dict(parsed.query):
        return url
    return parsed.set(password=mark, query=query).render_as_string(hide_password=False)
