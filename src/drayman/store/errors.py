"""Questions a caller may ask about an exception from the database, without importing
SQLAlchemy (only the store does, ADR 16).

- `database_errors()`: every failure of the metadata database, for the CLI's last resort.
- `is_constraint_violation(exc)`: a write met a row that already holds its key.
- `store.engine.is_deadlock(exc)`: the transaction was rolled back and may run again.
"""

from __future__ import annotations

import sys


def database_errors() -> tuple[type[BaseException], ...]:
    """The exception types of a failing database. Empty while SQLAlchemy is not imported: no
    command has reached the database then, and asking must not cost a CLI its import."""
    if "sqlalchemy" not in sys.modules:
        return ()
    from sqlalchemy.exc import SQLAlchemyError

    return (SQLAlchemyError,)


def is_constraint_violation(exc: BaseException) -> bool:
    """Whether a write broke a uniqueness (or other integrity) constraint: another process
    wrote the same row first, and the transaction was rolled back."""
    from sqlalchemy.exc import IntegrityError

    return isinstance(exc, IntegrityError)
