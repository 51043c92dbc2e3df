"""How a template's values reach a Shell command: each one as quoted shell words, never as code.

A Shell task's command runs with `bash -c`, and the values a template puts into it come from
people who must not get code execution through them: an operator's run conf, params overridden
by it, a run id. So every `{{ }}` output of a command template passes through `finalize`:

    str, number, bool, None, dict, ...   one word: `shlex.quote(str(value))`, the text Jinja
                                         would have printed, quoted
    list or tuple                        one quoted word per item (an empty list: nothing)
    RawShell, from `| unsafe_raw_shell`  pasted as it is: shell code the DAG author vouches for

Literal template text (and whatever `{% %}` blocks emit as literal text) is the DAG author's
shell code and is left alone, so pipes, redirections and `&&` work as written. A quoted word
only stays one word where the shell reads words: inside quotes the author wrote (`'{{ x }}'`,
`"{{ x }}"`), in backticks, a comment, a here-document or arithmetic it would break out or
be read again. `drayman.authoring.shell_placement` finds such a placeholder when the DAG file is
parsed, so the file fails with its line instead of a run failing (or worse) later.

A NUL byte cannot be passed to a process at all; `finalize` raises `NulByteError` naming the
value, and the caller says where it came from.
"""

from __future__ import annotations

import shlex
from typing import Any

RAW_FILTER = "unsafe_raw_shell"


class RawShell(str):
    """Text an author marked as shell code with `| unsafe_raw_shell`; `finalize` leaves it be.

    Only the filter makes one: a template cannot reach this class, and conf is JSON, so a value
    from outside can never arrive marked. Any string operation on it gives a plain `str` back,
    which is quoted again.
    """

    __slots__ = ()


class NulByteError(ValueError):
    """A value holds a NUL byte, which no process can receive in its arguments or environment."""

    def __init__(self, value: str) -> None:
        super().__init__(f"value {shorten(value)} holds a NUL byte")
        self.value = value


def unsafe_raw_shell(value: Any) -> RawShell:
    """The `unsafe_raw_shell` filter: `value` pasted into the command as shell code.

    A list or tuple gives its items' text joined by spaces.
    """
    items = value if isinstance(value, list | tuple) else [value]
    text = " ".join(str(item) for item in items)
    if "\0" in text:
        raise NulByteError(text)
    return RawShell(text)


def finalize(value: Any) -> str:
    """The text a `{{ }}` output of a command template puts into the command."""
    if isinstance(value, RawShell):
        return value
    if isinstance(value, list | tuple):
        return " ".join(_word(item) for item in value)
    return _word(value)


def check_text(value: Any) -> Any:
    """Finalize of env and cwd templates: text as Jinja prints it, but never a NUL byte."""
    if isinstance(value, str) and "\0" in value:
        raise NulByteError(value)
    return value


def _word(value: Any) -> str:
    text = str(value)
    if "\0" in text:
        raise NulByteError(text)
    return shlex.quote(text)


def shorten(value: str, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"
