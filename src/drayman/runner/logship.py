"""Ship a try's log to the database as it is written, so any host can read it (`LogShipper`).

A remote worker passes a `LogShipper` to `run_try(..., log_sink=...)`: the try's log still
goes to the worker's file, and the same bytes are buffered here and stored as numbered chunks
(`drayman.store.logs`) at most every `interval_s`, or sooner once `max_bytes` are waiting, plus
a last flush when the try's log is closed. The supervising poll loop wakes for a flush that is
due, so a task that prints a line and then sleeps has it shipped within `interval_s`.

Shipping never fails the try. A database error is logged once (`log.ship_failed`) and the
chunks stay queued, in order, for the next flush; a flush whose commit may or may not have
happened is followed by one that first asks which seq the database holds, so no chunk is
stored twice or skipped.
"""

from __future__ import annotations

import codecs
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from drayman.store import logs as log_store

if TYPE_CHECKING:
    from drayman.store.engine import Store

logger = logging.getLogger(__name__)

INTERVAL_S = 0.5
MAX_BYTES = 65536
FINAL_ATTEMPTS = 3  # when the try's log is closed: no later flush will retry for us


class LogShipper:
    """One try's log on its way to the `log_chunk` table; a `drayman.runner.trylog.LogSink`."""

    def __init__(
        self,
        store: Store,
        try_id: int,
        *,
        interval_s: float = INTERVAL_S,
        max_bytes: int = MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.try_id = try_id
        self.interval_s = interval_s
        self.max_bytes = max_bytes
        self._clock = clock
        self._buffer = bytearray()  # written, not yet cut into chunks
        self._pending: list[str] = []  # chunks cut, not yet stored; the first is seq `_seq`
        self._seq = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._next_at = clock() + interval_s
        self._unsure = False  # the last flush failed: it may have committed all the same
        self._failing = False  # a failure was logged and no flush has succeeded since

    def write(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= self.max_bytes or self._clock() >= self._next_at:
            self.flush()

    def due(self) -> float | None:
        """When the next flush is wanted (on the `clock`); None when nothing is waiting."""
        return self._next_at if self._buffer or self._pending else None

    def flush(self) -> None:
        self._store_pending(final=False)

    def close(self) -> None:
        """The last flush: retried a few times, since no later flush will come."""
        for attempt in range(FINAL_ATTEMPTS):
            if attempt:
                time.sleep(self.interval_s)
            if self._store_pending(final=True):
                return
        logger.error(
            "log.ship_abandoned try %s: %d chunks not stored after %d attempts; "
            "the worker's log file has them",
            self.try_id,
            len(self._pending),
            FINAL_ATTEMPTS,
        )

    def _store_pending(self, *, final: bool) -> bool:
        self._cut(final)
        self._next_at = self._clock() + self.interval_s
        if not self._pending:
            return True
        try:
            with self.store.begin() as conn:
                if self._unsure:
                    self._drop_stored(log_store.last_seq(conn, self.try_id))
                log_store.append_chunks(
                    conn, self.try_id, self._seq, self._pending, now=self.store.now()
                )
        except Exception as exc:  # any failure of the database: the try must go on
            self._failed(exc)
            return False
        self._seq += len(self._pending)
        self._pending.clear()
        self._unsure = False
        if self._failing:
            self._failing = False
            logger.info("log.ship_resumed try %s: the log is being stored again", self.try_id)
        return True

    def _cut(self, final: bool) -> None:
        """Turn the buffer into chunks of at most `max_bytes`, never splitting a character."""
        data, self._buffer = bytes(self._buffer), bytearray()
        for start in range(0, len(data), self.max_bytes):
            text = self._decoder.decode(data[start : start + self.max_bytes])
            if text:
                self._pending.append(text)
        if final:
            rest = self._decoder.decode(b"", final=True)
            if rest:
                self._pending.append(rest)

    def _drop_stored(self, last: int) -> None:
        """Forget the pending chunks that a flush reported as failed did store after all."""
        stored = max(0, last + 1 - self._seq)
        del self._pending[:stored]
        self._seq += stored

    def _failed(self, exc: Exception) -> None:
        self._unsure = True
        if not self._failing:
            self._failing = True
            logger.warning(
                "log.ship_failed try %s: %s: %s; keeping the log to retry at the next flush",
                self.try_id,
                type(exc).__name__,
                str(exc).strip().splitlines()[0] if str(exc).strip() else "",
            )
