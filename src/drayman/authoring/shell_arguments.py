"""How a template's values reach a Shell command: as bash's arguments, never as script text.

A Shell task runs `bash -c '__drayman_values=("$@"); SCRIPT' drayman ARG1 ARG2 ...`. The
values a template puts into its command come from people who must not get code execution
through them (an operator's run conf, params overridden by it, a run id), so no value is pasted
into SCRIPT: every `{{ }}` output becomes an argument, which the script's first words copy into
an array, and SCRIPT refers to it there (`drayman.authoring.shell_references`):

    str, number, bool, None, dict, ...   one argument, the text Jinja would have printed:
                                         `"${__drayman_values[0]}"`, unquoted inside "..."
    list or tuple                        one argument per item: `"${__drayman_values[@]:0:3}"`
                                         (no words for an empty list); inside "..."
                                         `${__drayman_values[*]:0:3}`, joined by spaces
    RawShell, from `| unsafe_raw_shell`  pasted into the script: code the DAG author vouches for

Bash never parses the text of an expanded parameter again, so a value is data wherever the
template puts it. Literal template text (and whatever `{% %}` blocks emit) is the author's
shell code and is left alone.

Two things bash cannot receive or would run anyway are refused per value, whatever its place:
a NUL byte (no process can receive one), and text that runs a command when bash evaluates it as
arithmetic or as a variable name, which it does even for a quoted variable (`$(( $1 ))`,
`[[ $1 -eq 0 ]]`, `let`, `declare -i`, `printf -v "$1"`, `read "$1"`, `test -v "$1"`): an array
subscript `[...]` followed by `$(`, `${` or a backtick. Bash expands a subscript the command
writes again, too (`a=([{{ x }}]=1)`, `printf -v "a[{{ x }}]"`), so a value with `$(`, `${`
or a backtick is refused where the scanner sees an open `[` in its word: it errs towards
"inside". A value over the kernel's limit for one argument is refused, with advice instead
of E2BIG.

While rendering, `finalize` puts a marker in the output for each value (`\\0<nonce>:<n>\\0`, a
nonce no value can know); `ScriptBuilder` then replaces each marker by the reference its place
in the finished text calls for. A marker inside a value (a macro's output printed with `{{ }}`)
is replaced by the value's own text: that output is one argument like any other.
"""

from __future__ import annotations

import re
import secrets
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from drayman.authoring.shell_references import REFUSED, VALUES_PREFIX, Scanner, reference

if TYPE_CHECKING:
    from jinja2.runtime import Context as JinjaContext

RAW_FILTER = "unsafe_raw_shell"
VALUES_KEY = "drayman:values"  # not an identifier: no template can name it
SCRIPT_NAME = "drayman"  # bash's $0, the name in its error messages
# Linux refuses one argument (or environment entry) longer than 32 pages, its NUL included.
MAX_ARGUMENT_BYTES = 32 * 4096 - 1


class RawShell(str):
    """Text an author marked as shell code with `| unsafe_raw_shell`; `finalize` leaves it be.

    Only the filter makes one: a template cannot reach this class, and conf is JSON, so a value
    from outside can never arrive marked. Any string operation on it gives a plain `str` back,
    which is an argument again.
    """

    __slots__ = ()


class UnsafeValueError(ValueError):
    """A value bash must not receive. `problem` says why; `applies` tells, for a value the
    template started from (a conf or params leaf), whether it is the one to blame."""

    problem = ""

    def __init__(self, value: str, applies: Callable[[str], bool]) -> None:
        super().__init__(f"value {shorten(value)} {self.problem}")
        self.value = value
        self.applies = applies


def _has_nul(text: str) -> bool:
    return "\0" in text


def _subscript_with_command(text: str) -> bool:
    start = text.find("[")
    return start >= 0 and any(text.find(mark, start) >= 0 for mark in ("$(", "${", "`"))


def _too_long(text: str) -> bool:
    return _size(text) > MAX_ARGUMENT_BYTES


class NulByteError(UnsafeValueError):
    """A value holds a NUL byte, which no process can receive in its arguments or environment."""

    problem = (
        "holds a NUL byte, which no process can receive in its arguments or environment: "
        "trigger the run with a value without one"
    )

    def __init__(self, value: str) -> None:
        super().__init__(value, _has_nul)


class ArithmeticHazardError(UnsafeValueError):
    """A value holds an array subscript with a command in it, which bash's arithmetic runs."""

    problem = (
        "holds `[` followed by `$(`, `${` or a backtick, which would run a command if bash "
        "evaluated it as arithmetic or as a variable name (`$(( ))`, `[[ -eq ]]`, `let`, "
        "`declare -i`, `printf -v`, `read`, `test -v`), even passed as data: trigger the "
        "run with a value without such a subscript"
    )

    def __init__(self, value: str) -> None:
        super().__init__(value, _subscript_with_command)


def _has_command(text: str) -> bool:
    return any(mark in text for mark in ("$(", "${", "`"))


class SubscriptHazardError(UnsafeValueError):
    """A value with a command in it lands inside an array subscript the command writes."""

    problem = (
        "holds `$(`, `${` or a backtick and lands inside a `[...]` of the command, where bash "
        'would run it if the text is an array subscript (`a=([x]=1)`, `printf -v "a[x]"`, '
        "`read`, `declare`, `let`, `test -v`): trigger the run with a value without them, or "
        "make the subscript a number (`{{ x | int }}`)"
    )

    def __init__(self, value: str) -> None:
        super().__init__(value, _has_command)


class ArgumentTooLongError(UnsafeValueError):
    """A value longer than the kernel accepts for one program argument."""

    def __init__(self, value: str) -> None:
        self.problem = (
            f"({_size(value)} bytes) is over the operating system's limit of "
            f"{MAX_ARGUMENT_BYTES} bytes for one program argument: pass big values in a file "
            "or on stdin, not in conf"
        )
        super().__init__(value, _too_long)


class ReferenceContextError(ValueError):
    """A value landed where bash never expands a parameter (inside '...'): a template error."""


def check_value(text: str) -> str:
    """`text` if bash may receive it as a value, else the UnsafeValueError that says why."""
    if _has_nul(text):
        raise NulByteError(text)
    if _too_long(text):
        raise ArgumentTooLongError(text)
    if _subscript_with_command(text):
        raise ArithmeticHazardError(text)
    return text


def check_text(value: Any) -> Any:
    """Finalize of env and cwd templates: Jinja's text, checked like a command's values."""
    return check_value(value) if isinstance(value, str) else value


def unsafe_raw_shell(value: Any) -> RawShell:
    """The `unsafe_raw_shell` filter: `value` pasted into the script as shell code.

    A list or tuple gives its items' text joined by spaces.
    """
    items = value if isinstance(value, list | tuple) else [value]
    return RawShell(" ".join(str(item) for item in items))


@dataclass(frozen=True)
class ShellCommand:
    """A rendered Shell command: the author's script with references, and the values."""

    script: str
    args: tuple[str, ...] = ()

    def argv(self) -> list[str]:
        """What runs: bash, whose script first copies its arguments to the array the
        references index, on the script's first line so error line numbers stay the author's."""
        return ["bash", "-c", VALUES_PREFIX + self.script, SCRIPT_NAME, *self.args]

    def display(self) -> str:
        """The command as one log line, exactly as it runs (the array's prefix too): every
        word quoted, newlines and control characters escaped, so a value cannot forge a line
        of its own."""
        return " ".join(display_word(word) for word in self.argv())


class Values:
    """The values one render of a command template put out, each behind a marker."""

    def __init__(self) -> None:
        nonce = secrets.token_hex(8)
        self._prefix = f"\0{nonce}:"
        self.pattern = re.compile(re.escape(self._prefix) + r"(\d+)\0")
        self.slots: list[str | list[str]] = []  # a str is one argument, a list several

    def add(self, value: Any) -> str:
        """The marker standing for `value` in the output."""
        if isinstance(value, list | tuple):
            self.slots.append([check_value(self.text(item)) for item in value])
        else:
            self.slots.append(check_value(self.text(value)))
        return f"{self._prefix}{len(self.slots) - 1}\0"

    def text(self, value: Any) -> str:
        """`value`'s text, a marker in it (from a macro or a block) replaced by its value."""
        return self.pattern.sub(lambda found: self.text_of(int(found[1])), str(value))

    def text_of(self, index: int) -> str:
        """The text of value `index`; a list's items joined by spaces."""
        slot = self.slots[index]
        return slot if isinstance(slot, str) else " ".join(slot)


def finalize(context: JinjaContext, value: Any) -> str:
    """The text a `{{ }}` output of a command template puts out: a marker, or raw shell code.

    Decorated with `jinja2.pass_context` by the environment: it needs this render's `Values`,
    and it keeps Jinja from finalizing constants once at compile time.
    """
    if isinstance(value, RawShell):
        return value
    values: Values = context[VALUES_KEY]
    return values.add(value)


class ScriptBuilder:
    """Turns a rendered, marked command into the script and its arguments."""

    def __init__(self, values: Values) -> None:
        self.values = values
        self.positions: dict[int, int] = {}  # slot -> its first value's index in the array
        self.args: list[str] = []

    def build(self, marked: str) -> ShellCommand:
        scanner = Scanner()
        parts = self.values.pattern.split(marked)  # text, slot, text, slot, ..., text
        script: list[str] = []
        for number, part in enumerate(parts):
            if number % 2 == 0:
                if "\0" in part:  # only a raw fragment can bring one
                    raise NulByteError(part)
                scanner.feed(part)
                script.append(part)
                continue
            context = scanner.where()
            text = self.values.text_of(int(part))
            if scanner.in_subscript() and _has_command(text):
                raise SubscriptHazardError(text)
            if context in REFUSED:
                before = "".join(script)[-30:]
                raise ReferenceContextError(
                    f"the value after {before!r} lands inside {REFUSED[context]}"
                )
            script.append(self._reference(int(part), context))
            scanner.value(text)
        return ShellCommand("".join(script), tuple(self.args))

    def _reference(self, slot: int, context: str) -> str:
        value = self.values.slots[slot]
        if slot not in self.positions:
            self.positions[slot] = len(self.args)
            self.args.extend([value] if isinstance(value, str) else value)
        count = None if isinstance(value, str) else len(value)
        return reference(context, self.positions[slot], count)


def display_word(text: str) -> str:
    """`text` quoted for a shell, as `$'...'` with escapes if it holds a control character."""
    if text.isprintable():
        return shlex.quote(text)
    escaped = "".join(_escape(char) for char in text)
    return f"$'{escaped}'"


_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    if char.isprintable() or char == " ":
        return char
    code = ord(char)
    if code < 0x80:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def shorten(value: str, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _size(text: str) -> int:
    return len(text.encode(errors="surrogateescape"))
