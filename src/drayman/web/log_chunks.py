"""A try's log as the JSON API pages it: chunks after a sequence number.

Chunks come from the database once a worker shipped any; else from the local log file, cut
in `FILE_CHUNK_BYTES` slices numbered like chunks, so a client pages both the same way. (The
log page of the UI reads whole lines instead: `web/pages/logview.py`.)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from drayman.config import Settings
from drayman.store import history
from drayman.store import logs as log_store
from drayman.store.engine import Store
from drayman.store.tries import UNFINISHED

FILE_CHUNK_BYTES = 64 * 1024  # a local log file is paged in slices of this size


def log_page(
    store: Store, settings: Settings, try_id: int, after_seq: int, limit: int
) -> dict[str, Any]:
    """Chunks of a try's log after `after_seq`: shipped to the database, else the local file
    cut in FILE_CHUNK_BYTES slices (seq = slice number), so paging works the same on both."""
    with store.read() as conn:
        row = history.get_try(conn, try_id)
        finished = row.state not in UNFINISHED  # read before the log: see cli/tasks.py
        chunks = log_store.read_chunks(conn, try_id, after_seq, limit=limit)
        last = log_store.last_seq(conn, try_id)
    source, total = "database", last + 1
    if last < 0:
        chunks, total, source = _file_chunks(settings, row.log_path, after_seq, limit)
    items = [{"seq": seq, "text": text} for seq, text in chunks]
    return {
        "try_id": try_id,
        "source": source,
        "finished": finished,
        "items": items,
        "total": total,
        "limit": limit,
        "after_seq": after_seq,
        "next_after_seq": items[-1]["seq"] if items else after_seq,
    }


def _file_chunks(
    settings: Settings, log_path: str, after_seq: int, limit: int
) -> tuple[list[tuple[int, str]], int, str]:
    path = _log_file(settings, log_path)
    if path is None:
        return [], 0, "none"
    try:
        with path.open("rb") as file:
            size = file.seek(0, 2)
            first = after_seq + 1
            file.seek(first * FILE_CHUNK_BYTES)
            data = file.read(limit * FILE_CHUNK_BYTES)
    except OSError:
        return [], 0, "none"
    chunks = [
        (first + i, data[at : at + FILE_CHUNK_BYTES].decode("utf-8", errors="replace"))
        for i, at in enumerate(range(0, len(data), FILE_CHUNK_BYTES))
    ]
    return chunks, math.ceil(size / FILE_CHUNK_BYTES), "file"


def _log_file(settings: Settings, log_path: str) -> Path | None:
    """The local log file, if it is under the logs folder (a stored path never leads out)."""
    if not log_path:
        return None
    root = settings.logs_folder.resolve()
    path = (root / log_path).resolve()
    return path if path.is_relative_to(root) and path.is_file() else None
