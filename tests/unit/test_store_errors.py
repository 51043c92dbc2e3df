"""The store answers questions about database exceptions, so its callers never import
SQLAlchemy (ADR 16): which types a failing database raises, and which mean "written first"."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError, OperationalError

from drayman.store.errors import database_errors, is_constraint_violation


def test_a_failing_database_is_caught_as_one_of_the_database_errors() -> None:
    failure = OperationalError("SELECT 1", {}, Exception("server closed the connection"))
    assert isinstance(failure, database_errors())
    assert not isinstance(ValueError("a bug"), database_errors())


def test_only_an_integrity_error_is_a_constraint_violation() -> None:
    duplicate = IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed"))
    lost = OperationalError("INSERT", {}, Exception("server closed the connection"))
    assert is_constraint_violation(duplicate)
    assert not is_constraint_violation(lost)
    assert not is_constraint_violation(ValueError("a bug"))
