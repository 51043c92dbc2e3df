"""Where things are in the user's files, and how ids and names are checked.

Every error a DAG file can cause names its file and line, as found by `caller_location()`,
and suggests a spelling when a name is close to a valid one: "dags/sales.py:12: task 'load':
unknown keyword 'retires' (did you mean 'retries'?)".
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable

from drayman.exceptions import DagDefinitionError

_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,250}")


def caller_location() -> str:
    """The "file:line" of the nearest caller outside drayman.authoring: the user's DAG file."""
    frame = sys._getframe(1)
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith(
        "drayman.authoring"
    ):
        frame = frame.f_back
    return f"{_display_path(frame.f_code.co_filename)}:{frame.f_lineno}"


def _display_path(path: str) -> str:
    # Relative to the working directory when below it: "dags/sales.py" reads better. The
    # resolved path is tried too, as the working directory is always a resolved one.
    for candidate in (path, os.path.realpath(path)):
        try:
            relative = os.path.relpath(candidate)
        except ValueError:  # another drive on Windows
            continue
        if not relative.startswith(".."):
            return relative
    return path


def check_id(kind: str, value: object, where: str) -> str:
    """`value` if it is a valid DAG or task id, else a DagDefinitionError at `where`."""
    if not isinstance(value, str) or not _ID_PATTERN.fullmatch(value):
        raise DagDefinitionError(
            f"{where}: invalid {kind} id {value!r}: use 1 to 250 letters, digits, '_', '.' or '-'"
        )
    return value


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or ''."""
    import difflib  # only on the error path

    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
