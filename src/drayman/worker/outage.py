"""A database that is away, as the worker's engine sees it: when to try again, what to log.

A claim or a record that fails is retried every `RETRY_S` without losing anything; the
first failure and the recovery are logged once each, not every attempt.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("drayman.worker")

RETRY_S = 1.0  # after a database error: the next attempt of a claim or a record


class Outage:
    """Whether the last database attempt failed, and when the next one is due."""

    def __init__(self) -> None:
        self.failing = False
        self.retry_at = 0.0  # time.monotonic() of the next attempt; 0: at once

    def too_soon(self) -> bool:
        """Whether the next attempt is not due yet."""
        return time.monotonic() < self.retry_at

    def failed(self, what: str, exc: Exception) -> None:
        self.retry_at = time.monotonic() + RETRY_S
        if not self.failing:
            self.failing = True
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            log.error(
                "worker.%s_failed: %s: %s; retrying every %.0f s",
                what,
                type(exc).__name__,
                first,
                RETRY_S,
            )

    def succeeded(self) -> None:
        self.retry_at = 0.0
        if self.failing:
            self.failing = False
            log.info("worker.database_back: claims and outcomes are recorded again")
