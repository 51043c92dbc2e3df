"""Which run ids a manual run may take (`drayman.run_ids`), the same from every entry point."""

from __future__ import annotations

import pytest

from drayman.exceptions import RunIdError
from drayman.run_ids import MAX_RUN_ID, check_manual_run_id
from drayman.store.schema import ID


@pytest.mark.parametrize(
    "run_id", ["r1", "manual__2026-03-01T00:00:00+00:00", "nightly.fix-2", "a" * MAX_RUN_ID]
)
def test_ordinary_ids_are_taken(run_id: str) -> None:
    check_manual_run_id(run_id)


@pytest.mark.parametrize(
    ("run_id", "message"),
    [
        ("scheduled__2026-03-01T00:00:00+00:00", "prefix 'scheduled__' is reserved"),
        ("backfill__2026-03-01T00:00:00+00:00", "prefix 'backfill__' is reserved"),
        # MariaDB compares ids case-insensitively: these would take the scheduler's own key
        ("SCHEDULED__2026-03-01T00:00:00+00:00", "prefix 'scheduled__' is reserved"),
        ("Backfill__x", "prefix 'backfill__' is reserved"),
        ("..", "may not start with '.' or hold '..'"),
        ("a..b", "hold '..'"),
        (".hidden", "may not start with '.'"),
        ("a/b", "'/' at position 1 is not allowed"),
        ("a\\b", "'\\\\\\\\' at position 1"),
        ("a\x00b", "U\\+0000 at position 1"),
        ("a\nb", "U\\+000A at position 1"),
        ("a\x7fb", "U\\+007F"),
        ("a b", "U\\+0020"),
        ("a\ud800", "U\\+D800"),
        ("lauf_ä", "'ä' at position 5"),
        ("", "must not be empty"),
        ("a" * (MAX_RUN_ID + 1), f"{MAX_RUN_ID + 1} characters, over the limit of {MAX_RUN_ID}"),
    ],
)
def test_bad_ids_are_refused_saying_why(run_id: str, message: str) -> None:
    with pytest.raises(RunIdError, match=message):
        check_manual_run_id(run_id)


def test_the_cap_is_the_column_length() -> None:
    assert MAX_RUN_ID == ID
