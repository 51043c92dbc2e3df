"""One page of a try's log, from wherever it is: shipped to the database, else the local file.

A remote worker ships the log in numbered chunks (`store.logs`); a local try writes a file
under the logs folder. A page is at most `PAGE_BYTES` of text, so a 2 GB log costs one page
per request. A position (`pos`) says where the next page starts: the last chunk's seq read,
or a byte offset in the file. The same call serves the live tail: the browser asks for what
comes after the position it has, every second or two, until the try has ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from drayman.store import logs as log_store
from drayman.store.engine import Connection

PAGE_BYTES = 128 * 1024
CHUNKS_PER_READ = 200


@dataclass(frozen=True)
class LogPage:
    source: str  # "db" | "file" | "none"
    text: str
    start: int  # the position this page starts at
    pos: int  # the position after this page (ask for it to get what follows)
    more: bool  # more is stored already: the next page is there now
    last: int  # a position from which one page reaches the end (for a "last page" link)


def source_of(conn: Connection, try_id: int, path: Path | None) -> str:
    """Where the try's log is: "db" once any chunk was shipped, else "file" if it exists."""
    if log_store.last_seq(conn, try_id) >= 0:
        return "db"
    if path is not None and path.is_file():
        return "file"
    return "none"


def read_page(
    conn: Connection, try_id: int, path: Path | None, source: str, pos: int | None
) -> LogPage:
    """The page starting at `pos` (None: the first page) of the log at `source`."""
    if source == "db":
        return _db_page(conn, try_id, -1 if pos is None else pos)
    if source == "file" and path is not None:
        return _file_page(path, 0 if pos is None else max(pos, 0))
    start = 0 if pos is None else max(pos, 0)
    return LogPage("none", "", start, start, False, start)


def _db_page(conn: Connection, try_id: int, after: int) -> LogPage:
    texts: list[str] = []
    size, seq, more = 0, after, False
    while size < PAGE_BYTES:
        chunks = log_store.read_chunks(conn, try_id, seq, limit=CHUNKS_PER_READ)
        for chunk_seq, text in chunks:
            if size >= PAGE_BYTES:
                more = True
                break
            texts.append(text)
            size += len(text)
            seq = chunk_seq
        if more or len(chunks) < CHUNKS_PER_READ:
            break
    last_seq = log_store.last_seq(conn, try_id)
    more = more or seq < last_seq
    return LogPage("db", "".join(texts), after, seq, more, max(last_seq - 20, -1))


def _file_page(path: Path, offset: int) -> LogPage:
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read(PAGE_BYTES)
    except FileNotFoundError:
        return LogPage("file", "", offset, offset, False, offset)
    at_end = offset + len(data) >= size
    if not at_end:
        # keep lines (and UTF-8 characters) whole: end the page at its last newline
        cut = data.rfind(b"\n")
        if cut > 0:
            data = data[: cut + 1]
    elif data and not data.endswith(b"\n"):
        # a line still being written: hand out complete characters only, the rest next time
        data = _whole_utf8(data)
    end = offset + len(data)
    return LogPage(
        "file",
        data.decode("utf-8", errors="replace"),
        offset,
        end,
        not at_end,  # what is held back at the end is not a page ready to read
        max(size - PAGE_BYTES, 0),
    )


def _whole_utf8(data: bytes) -> bytes:
    """`data` without a UTF-8 sequence cut off at its end."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return data
        if byte >= 0xC0:  # a lead byte: is its sequence complete?
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return data if back >= need else data[:-back]
    return data
