"""Password hashing: argon2id, memory-hard by default, and never crashing on bad input."""

from __future__ import annotations

import pytest

from drayman.auth.passwords import MAX_LENGTH, MIN_LENGTH, Passwords
from drayman.exceptions import UnacceptableCredential


@pytest.fixture(scope="module")
def cheap() -> Passwords:
    return Passwords(memory_kib=256, time_cost=1, parallelism=1)


def test_default_hash_is_argon2id_with_64_mib_and_3_passes() -> None:
    encoded = Passwords().hash("correct horse battery")

    assert encoded.startswith("$argon2id$"), f"not argon2id: {encoded}"
    assert "m=65536,t=3,p=4" in encoded, f"weaker parameters than RFC 9106's: {encoded}"


def test_verify_accepts_the_password_and_refuses_others(cheap: Passwords) -> None:
    encoded = cheap.hash("correct horse battery")

    assert cheap.verify(encoded, "correct horse battery")
    assert not cheap.verify(encoded, "correct horse batterY"), "a wrong password was accepted"
    assert not cheap.verify(encoded, ""), "an empty password was accepted"


def test_the_same_password_hashes_differently_each_time(cheap: Passwords) -> None:
    assert cheap.hash("correct horse battery") != cheap.hash("correct horse battery"), (
        "no random salt: equal passwords would show as equal hashes"
    )


def test_a_malformed_stored_hash_is_a_mismatch_and_needs_rehash(cheap: Passwords) -> None:
    assert not cheap.verify("not-a-hash", "correct horse battery")
    assert cheap.needs_rehash("not-a-hash")


def test_needs_rehash_when_parameters_change(cheap: Passwords) -> None:
    stronger = Passwords(memory_kib=512, time_cost=2, parallelism=1)
    encoded = cheap.hash("correct horse battery")

    assert not cheap.needs_rehash(encoded)
    assert stronger.needs_rehash(encoded), "a hash with older parameters is kept forever"
    assert stronger.verify(encoded, "correct horse battery"), "old hashes must still verify"


@pytest.mark.parametrize("password", ["x" * (MIN_LENGTH - 1), "x" * (MAX_LENGTH + 1)])
def test_too_short_or_too_long_passwords_are_refused(cheap: Passwords, password: str) -> None:
    with pytest.raises(UnacceptableCredential, match="password too"):
        cheap.hash(password)


def test_a_huge_password_is_refused_before_hashing(cheap: Passwords) -> None:
    encoded = cheap.hash("correct horse battery")

    assert not cheap.verify(encoded, "x" * 10_000_000)
    cheap.waste_time("x" * 10_000_000)  # must not hash ten megabytes


def test_rehash_without_policy_check_keeps_an_old_short_password_usable(
    cheap: Passwords,
) -> None:
    assert cheap.verify(cheap.hash("short", check=False), "short")
