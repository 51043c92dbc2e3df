"""A bound on password checks running at once, so a flood of logins cannot starve the rest.

An argon2id check costs tens of milliseconds of CPU and 64 MiB; a burst of logins for
made-up usernames (each still hashed, so timing does not tell which names exist) would
otherwise fill the web's thread pool and its CPUs, and slow every API call. The gate has
`slots` permits (default: the CPU count); a login that finds none free is refused at once
with `LoginBusy` (429, Retry-After: 1), before any database work, instead of queueing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from drayman.exceptions import TooManyAttempts


class LoginBusy(TooManyAttempts):
    """Every password-check slot is taken: retry in a moment (no attempt was counted)."""


class LoginGate:
    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"a login gate needs at least 1 slot, got {slots}")
        self.slots = slots
        self._free = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self._busy = 0

    @property
    def busy(self) -> int:
        """Slots in use now (for tests and metrics)."""
        return self._busy

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one slot for the block, or raise LoginBusy at once if none is free."""
        if not self._free.acquire(blocking=False):
            raise LoginBusy("too many login attempts at once; retry in a second", 1)
        with self._lock:
            self._busy += 1
        try:
            yield
        finally:
            with self._lock:
                self._busy -= 1
            self._free.release()
