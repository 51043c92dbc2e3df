"""Usernames: one stored form, whatever the case, and a clear refusal of malformed ones."""

from __future__ import annotations

import pytest

from drayman.auth.users import normalize_username
from drayman.exceptions import UnacceptableCredential


def test_usernames_are_case_insensitive_and_trimmed() -> None:
    assert normalize_username("  Alice.Smith@example.com ") == "alice.smith@example.com"


@pytest.mark.parametrize("name", ["", "   ", "with space", "-dash-first", "x" * 151, "a/b", "é"])
def test_malformed_usernames_are_refused(name: str) -> None:
    with pytest.raises(UnacceptableCredential, match="letters, digits and"):
        normalize_username(name)
