"""Password hashing that counts its checks, for tests of the login throttle."""

from __future__ import annotations

import threading

from drayman.auth.passwords import Passwords


class CountingPasswords(Passwords):
    """Real argon2id with small costs, counting the password checks (thread-safe): for tests
    that show how many guesses reach a check."""

    def __init__(self) -> None:
        super().__init__(memory_kib=256, time_cost=1, parallelism=1)
        self.calls = 0
        self._lock = threading.Lock()

    def verify(self, password_hash: str, password: str) -> bool:
        with self._lock:
            self.calls += 1
        return super().verify(password_hash, password)
