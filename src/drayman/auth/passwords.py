"""Password hashing with argon2id: memory-hard, so guessing on GPUs is slow and costly.

Hashes are PHC strings (`$argon2id$v=19$m=65536,t=3,p=4$...`) that carry their own parameters;
when the parameters here are raised, `needs_rehash` says so and the next successful login
stores a new hash, with no migration.
"""

from __future__ import annotations

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from drayman.exceptions import UnacceptableCredential

MIN_LENGTH = 8
# argon2 hashes any length, but a megabyte "password" is a cheap way to burn CPU on the server
MAX_LENGTH = 1024


class Passwords:
    """Hash and verify passwords. The defaults are RFC 9106's second recommended option
    (64 MiB, 3 passes); tests pass smaller costs to stay fast, never production code."""

    def __init__(self, *, memory_kib: int = 65536, time_cost: int = 3, parallelism: int = 4):
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        self._dummy_hash: str | None = None

    def hash(self, password: str, *, check: bool = True) -> str:
        """The argon2id hash of an acceptable password (see `check_acceptable`). `check=False`
        is for rehashing a password that was accepted under an older policy."""
        if check:
            check_acceptable(password)
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        """Whether `password` matches; a malformed stored hash is a mismatch, never a crash."""
        if len(password) > MAX_LENGTH:
            return False
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether the hash was made with other parameters than these (then store a new one)."""
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True

    def waste_time(self, password: str) -> None:
        """Spend what a real check costs, for a user that does not exist: otherwise a quick
        answer would tell an attacker which usernames are real."""
        if self._dummy_hash is None:
            self._dummy_hash = self._hasher.hash("drayman-no-such-user")
        self.verify(self._dummy_hash, password[:MAX_LENGTH])


def check_acceptable(password: str) -> None:
    """Refuse passwords too short to resist guessing, or too long to hash cheaply."""
    if len(password) < MIN_LENGTH:
        raise UnacceptableCredential(f"password too short: use at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise UnacceptableCredential(f"password too long: use at most {MAX_LENGTH} characters")
