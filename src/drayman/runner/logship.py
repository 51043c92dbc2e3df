"""Cut a try's log into numbered chunks as it is written, so any host can read it from the store.

A remote worker's warm process runs each try with a `PipeLogSink`: the try's log still goes to
the worker's file, and the same bytes are cut into text chunks (`LogChunker`) that travel
over the worker's pipe to its engine (`drayman.worker`), which stores them in the
`log_chunk` table (`drayman.store.logs`) together with the outcomes of the same round. A
chunk leaves at most every `interval_s`, or sooner once `max_bytes` are waiting, plus a last
one when the try's log is closed; the supervising poll loop wakes for a flush that is due, so
a task that prints a line and then sleeps has it readable within `interval_s`.

Chunks are numbered here, where the bytes are written, so the store can refuse a chunk it
already holds and a retried flush never stores one twice or skips one.
"""

from __future__ import annotations

import codecs
import contextlib
import time
from collections.abc import Callable

from drayman.workloads import LogChunks

INTERVAL_S = 0.5
MAX_BYTES = 65536


class LogChunker:
    """One try's log bytes in, numbered text chunks out; never splits a UTF-8 character."""

    def __init__(
        self,
        try_id: int,
        *,
        interval_s: float = INTERVAL_S,
        max_bytes: int = MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.try_id = try_id
        self.interval_s = interval_s
        self.max_bytes = max_bytes
        self._clock = clock
        self._buffer = bytearray()
        self._seq = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._next_at = clock() + interval_s

    def write(self, data: bytes) -> LogChunks | None:
        """Take `data`; the chunks to send now, when a flush is due."""
        self._buffer += data
        if len(self._buffer) >= self.max_bytes or self._clock() >= self._next_at:
            return self.take()
        return None

    def due(self) -> float | None:
        """When the next flush is wanted (on the `clock`); None when nothing is waiting."""
        return self._next_at if self._buffer else None

    def take(self, *, final: bool = False) -> LogChunks | None:
        """Everything written so far as chunks of at most `max_bytes`; None when empty."""
        self._next_at = self._clock() + self.interval_s
        data, self._buffer = bytes(self._buffer), bytearray()
        texts = []
        for start in range(0, len(data), self.max_bytes):
            text = self._decoder.decode(data[start : start + self.max_bytes])
            if text:
                texts.append(text)
        if final:
            rest = self._decoder.decode(b"", final=True)
            if rest:
                texts.append(rest)
        if not texts:
            return None
        chunks = LogChunks(self.try_id, self._seq, tuple(texts))
        self._seq += len(texts)
        return chunks


class PipeLogSink:
    """A `drayman.runner.trylog.LogSink` that sends a try's chunks through `send`.

    `send` is the warm worker's connection to its executor. A send that fails (the worker's
    engine is gone, and the try is being killed with it) is dropped: the log file has it all.
    The last chunks, cut on `close()`, go to `send_last` when given: the warm worker sends
    them with its `WorkerDone`, one message fewer per try (for a short try, the only one).
    """

    def __init__(
        self,
        try_id: int,
        send: Callable[[LogChunks], None],
        send_last: Callable[[LogChunks], None] | None = None,
    ) -> None:
        self._chunker = LogChunker(try_id)
        self._send = send
        self._send_last = send_last

    def write(self, data: bytes) -> None:
        self._deliver(self._chunker.write(data))

    def due(self) -> float | None:
        return self._chunker.due()

    def flush(self) -> None:
        self._deliver(self._chunker.take())

    def close(self) -> None:
        chunks = self._chunker.take(final=True)
        if self._send_last is not None and chunks is not None:
            self._send_last(chunks)
        else:
            self._deliver(chunks)

    def _deliver(self, chunks: LogChunks | None) -> None:
        if chunks is None:
            return
        with contextlib.suppress(OSError):
            self._send(chunks)
