"""Path and query parameters the API and the pages share, bounded by what the database holds.

An id beyond its column's range, an offset no list reaches, or a date that leaves the calendar
once moved to UTC is answered 422 by FastAPI's validation (the usual error body under /api, the
error page otherwise) and never reaches a query: SQLite cannot bind an integer beyond 2**63 - 1,
an INT column ends at 2**31 - 1, and 9999-12-31T23:00-05:00 has no UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import AfterValidator, BeforeValidator

from drayman.store.schema import ID

INT_MAX = 2**31 - 1  # an Integer column on every database (MariaDB's INT)
MAX_OFFSET = 1_000_000_000
MAX_MAP_INDEX = 1_000_000
MAX_LOG_POS = 2**53  # positions go through the browser's numbers and come back


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def iso_text(value: Any) -> Any:
    """Only ISO 8601 text is a date here: pydantic would read `-22367` as a Unix time."""
    if isinstance(value, str) and not _ISO_DATE.match(value):
        raise ValueError("an ISO 8601 date or time is expected, like 2026-03-01T00:00:00Z")
    return value


def utc_instant(value: datetime) -> datetime:
    """`value` in UTC (naive means UTC already); ValueError when UTC cannot hold it."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(
            f"{value.isoformat()} is outside the dates UTC can hold (years 1 to 9999) once "
            "its offset is applied"
        ) from None


DagId = Annotated[str, Path(min_length=1, max_length=ID)]
RunId = Annotated[str, Path(min_length=1, max_length=ID)]
TaskId = Annotated[str, Path(min_length=1, max_length=ID)]
TryId = Annotated[int, Path(ge=1, le=INT_MAX)]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
MapIndex = Annotated[int, Query(ge=-1, le=MAX_MAP_INDEX)]
LogPos = Annotated[int | None, Query(ge=-1, le=MAX_LOG_POS)]
UtcInstant = Annotated[datetime, BeforeValidator(iso_text), AfterValidator(utc_instant)]
