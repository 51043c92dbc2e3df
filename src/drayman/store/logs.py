"""Log chunks: a try's log shipped to the database as it is written, readable from any host.

A worker that runs tries on another machine appends its tries' logs here in numbered chunks
(`drayman.runner.logship`, `drayman.worker`); `drayman tasks logs` and the web read
them back in order. Chunks are text: a NUL (which PostgreSQL refuses in text) is stored as
U+FFFD.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, func, insert, select, tuple_

from drayman.store.schema import log_chunk
from drayman.workloads import LogChunks


def append_chunks(
    conn: Connection,
    try_id: int,
    first_seq: int,
    chunks: Sequence[str | bytes],
    *,
    now: datetime,
) -> None:
    """Store `chunks` as seq `first_seq`, `first_seq + 1`, ...; bytes are decoded as UTF-8.

    A seq stored before is refused (IntegrityError): the caller checks `last_seq` after a
    failure whose commit it cannot be sure of.
    """
    if not chunks:
        return
    conn.execute(
        insert(log_chunk),
        [
            {"try_id": try_id, "seq": first_seq + i, "data": _text(chunk), "created_at": now}
            for i, chunk in enumerate(chunks)
        ],
    )


_INSERT_CHUNK = insert(log_chunk)


def append_many(conn: Connection, batches: Sequence[LogChunks], *, now: datetime) -> None:
    """Store the chunks of many tries in one statement; a stored (try, seq) is refused."""
    rows = [
        {
            "try_id": batch.try_id,
            "seq": batch.first_seq + i,
            "data": _text(chunk),
            "created_at": now,
        }
        for batch in batches
        for i, chunk in enumerate(batch.chunks)
    ]
    if rows:
        conn.execute(_INSERT_CHUNK, rows)


def not_yet_stored(conn: Connection, batches: Sequence[LogChunks]) -> list[LogChunks]:
    """`batches` without the chunks the store already holds: after a flush whose commit is
    uncertain, so that retrying it stores nothing twice."""
    wanted = [(b.try_id, b.first_seq + i) for b in batches for i in range(len(b.chunks))]
    if not wanted:
        return []
    held = {
        (int(try_id), int(seq))
        for try_id, seq in conn.execute(
            select(log_chunk.c.try_id, log_chunk.c.seq).where(
                tuple_(log_chunk.c.try_id, log_chunk.c.seq).in_(wanted)
            )
        )
    }
    kept = []
    for batch in batches:
        for i, chunk in enumerate(batch.chunks):
            if (batch.try_id, batch.first_seq + i) not in held:
                kept.append(LogChunks(batch.try_id, batch.first_seq + i, (chunk,)))
    return kept


def read_chunks(
    conn: Connection, try_id: int, after_seq: int = -1, *, limit: int = 1000
) -> list[tuple[int, str]]:
    """(seq, text) of the try's chunks after `after_seq`, in order, at most `limit` of them."""
    rows = conn.execute(
        select(log_chunk.c.seq, log_chunk.c.data)
        .where(log_chunk.c.try_id == try_id, log_chunk.c.seq > after_seq)
        .order_by(log_chunk.c.seq)
        .limit(limit)
    )
    return [(int(seq), str(data)) for seq, data in rows]


def last_seq(conn: Connection, try_id: int) -> int:
    """The highest seq stored for the try; -1 when it has none."""
    value = conn.execute(
        select(func.max(log_chunk.c.seq)).where(log_chunk.c.try_id == try_id)
    ).scalar()
    return -1 if value is None else int(value)


def _text(chunk: str | bytes) -> str:
    text = chunk.decode("utf-8", errors="replace") if isinstance(chunk, bytes) else chunk
    return text.replace("\x00", "\ufffd")
