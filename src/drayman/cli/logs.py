"""drayman's own log lines on stdout: text for people, or one JSON object per line.

Every message starts with a stable event name (`run.finished`, `task.retry_scheduled`), so
`grep` and log pipelines can key on it.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from drayman.redact import MaskingFilter


class _UtcFormatter(logging.Formatter):
    converter = time.gmtime  # type: ignore[assignment]  # typeshed's overload confuses mypy

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s.%(msecs)03dZ %(levelname)-7s %(message)s", "%Y-%m-%dT%H:%M:%S"
        )


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        event = message.split(" ", 1)[0]
        return json.dumps(
            {
                "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                + f".{int(record.msecs):03d}Z",
                "level": record.levelname.lower(),
                "event": event,
                "message": message,
                "logger": record.name,
            }
        )


def setup(log_format: str, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_JsonFormatter() if log_format == "json" else _UtcFormatter())
    handler.addFilter(MaskingFilter())  # every line, whichever logger wrote it
    root = logging.getLogger("drayman")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
