"""The outcomes and log chunks a worker's engine has not stored yet, and how they are stored.

They are written in one transaction per round (with that round's claim, when the database
is well). After a commit that may or may not have happened (`unsure`), the next write first
asks what the store holds already, so no chunk is stored twice.
"""

from __future__ import annotations

from collections.abc import Callable

from drayman.store import logs as log_store
from drayman.store import tries as try_store
from drayman.store.engine import Connection, Store
from drayman.workloads import LogChunks, TryOutcome


class Recorder:
    """What waits to be stored; `retry_delay_s(subject)` gives a failed try's retry delay,
    which the store is handed as a value."""

    def __init__(
        self, store: Store, retry_delay_s: Callable[[try_store.RetrySubject], float]
    ) -> None:
        self.store = store
        self.retry_delay_s = retry_delay_s
        self.outcomes: list[TryOutcome] = []
        self.chunks: list[LogChunks] = []
        self.unsure = False  # the last write failed: it may have committed all the same

    def pending(self) -> bool:
        return bool(self.outcomes or self.chunks)

    def take(self) -> tuple[list[TryOutcome], list[LogChunks]]:
        """All that waits, to be written; `put_back` it if the write fails."""
        taken = self.outcomes, self.chunks
        self.outcomes, self.chunks = [], []
        return taken

    def put_back(self, outcomes: list[TryOutcome], chunks: list[LogChunks]) -> None:
        """A failed write's outcomes and chunks wait again, before any that came since."""
        self.outcomes = outcomes + self.outcomes
        self.chunks = chunks + self.chunks
        self.unsure = bool(outcomes or chunks)

    def write(
        self, conn: Connection, outcomes: list[TryOutcome], chunks: list[LogChunks]
    ) -> list[try_store.Recorded]:
        """After a commit that may have happened, only what the store does not hold yet."""
        if self.unsure:
            chunks = log_store.not_yet_stored(conn, chunks)
        log_store.append_many(conn, chunks, now=self.store.now())
        delays = {s.try_id: self.retry_delay_s(s) for s in try_store.retry_subjects(conn, outcomes)}
        return try_store.record_outcomes(conn, outcomes, retry_delays=delays)
