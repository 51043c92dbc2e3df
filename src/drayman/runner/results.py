"""What a try sends back: its return value as capped JSON, or its error as one line.

A Python task's return value is carried to its downstream tasks, so it must be JSON, and it is
capped (DRAYMAN_MAX_RESULT_BYTES): a value that is not JSON or is too big fails the try with an
error that says what to do instead. The child sends one message on its result pipe (see
`drayman.runner.process`): b"R" + JSON, or b"E" + a one-line error; the full traceback is in
the try's log. Pure: no I/O, so these rules are tested without forking.
"""

from __future__ import annotations

import json
from typing import Any

from drayman.exceptions import DraymanError, ResultTooLargeError

_ERROR_CHARS = 1000  # a one-line error longer than this is cut: the log has the full text
# Built once: json.dumps with options builds a new encoder per call, in every forked child.
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


class ResultNotJSONError(DraymanError, TypeError):
    """A task returned a value that JSON cannot carry to its downstream tasks."""


def encode_result(task_id: str, value: Any, max_bytes: int) -> str:
    """`value` as compact JSON, or an error that says what to do instead."""
    try:
        text = _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise ResultNotJSONError(
            f"task {task_id!r} returned a value that is not JSON ({exc}); return only str, "
            "int, float, bool, None, list or dict, and write other data to storage"
        ) from None
    size = len(text)  # the encoder escapes non-ASCII: one character is one byte
    if size > max_bytes:
        raise ResultTooLargeError(
            f"task {task_id!r} returned {format_bytes(size)}; results are capped at "
            f"{format_bytes(max_bytes)} (DRAYMAN_MAX_RESULT_BYTES): "
            "write big data to storage and return its path"
        )
    return text


def format_bytes(size: int) -> str:
    """A size as people read it: 812 bytes, 64 KB, 1.2 MB."""
    if size < 1024:
        return f"{size} bytes"
    value, unit = (size / 1024**2, "MB") if size >= 1024**2 else (size / 1024, "KB")
    text = f"{value:.1f}".removesuffix(".0")
    return f"{text} {unit}"


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    if isinstance(exc, DraymanError) and text:
        first = text[0]  # drayman's own messages are already written for people
    return first if len(first) <= _ERROR_CHARS else first[: _ERROR_CHARS - 3] + "..."
