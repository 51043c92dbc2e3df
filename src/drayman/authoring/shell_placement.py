r"""Where a value lands in a Shell command's shell syntax, checked when the DAG file is parsed.

`drayman.authoring.shell_quoting` makes every `{{ }}` value quoted shell words. That keeps it
one word only where bash reads words: inside quotes the author wrote (`'{{ x }}'` renders as
`''a; b''`, the quotes cancel out), in backticks, a comment, a here-document, after `\` or `$`
it breaks out or is read again; and in arithmetic (`$(( ))`, `[[ -eq ]]`, `let`, subscripts)
bash evaluates even quoted text, running any `$( )` in an array subscript. `placement_error`
follows the template's literal text with a small model of bash's quoting and names the first
placeholder in such a place, so the DAG file fails with its line.

It errs towards refusing: a value inside `"$(...)"` is reported as inside double quotes,
though bash would start a fresh context there. The author's escape hatches are explicit:
`| unsafe_raw_shell` anywhere, `| int` or `| float` in arithmetic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from drayman.authoring.shell_quoting import RAW_FILTER

if TYPE_CHECKING:
    from jinja2 import Environment


@dataclass(frozen=True)
class Placeholder:
    """A `{{ }}` expression of a template: its line, its source, and the shell state around it."""

    lineno: int
    source: str  # the expression between the braces
    state: str  # "" where the shell reads words, else a key of _ShellScanner.CONTEXTS


def placement_error(template: str, env: Environment) -> str | None:
    """Why a placeholder of `template` would not land as shell words, or None.

    `env` is the Jinja environment (its lexer splits the template). A placeholder that ends in
    `| unsafe_raw_shell` is the author's explicit choice and is not checked; in arithmetic, one
    that ends in `| int` or `| float` is a number and safe.
    """
    placeholders, skeleton = _scan(template, env)
    arithmetic = _in_arithmetic_commands(skeleton)
    for index, placeholder in enumerate(placeholders):
        state = "((" if index in arithmetic and not placeholder.state else placeholder.state
        if _allowed(placeholder.source, state):
            continue
        where = f"line {placeholder.lineno}: {{{{ {placeholder.source} }}}} is inside"
        if state in ("((", "${"):
            return f"{where} {_ShellScanner.CONTEXTS[state]}"
        return (
            f"{where} {_ShellScanner.CONTEXTS[state]}; drayman quotes every value as shell "
            "words itself, so write it outside any quotes (`--out {{ params.out }}`, or "
            '`"$DIR/"{{ ds }}` to join it to text), or pass it in env= and use "$NAME"'
        )
    return None


def _allowed(source: str, state: str) -> bool:
    if not state or _ends_with_filter(source, RAW_FILTER):
        return True
    return state in ("((", "${") and _ends_with_filter(source, "int", "float")


def _ends_with_filter(source: str, *names: str) -> bool:
    pattern = r"\|\s*(" + "|".join(names) + r")\s*(\([^()]*\))?\s*$"
    return re.search(pattern, source) is not None


def _scan(template: str, env: Environment) -> tuple[list[Placeholder], str]:
    """The placeholders of `template`, and its literal text with each one as `\0<index>\0`."""
    scanner = _ShellScanner()
    placeholders: list[Placeholder] = []
    skeleton: list[str] = []
    source: list[str] = []
    in_variable = False
    for lineno, token, value in env.lex(template):
        if token == "variable_begin":
            in_variable, source = True, []
        elif token == "variable_end":
            in_variable = False
            skeleton.append(f"\0{len(placeholders)}\0")
            placeholders.append(Placeholder(lineno, "".join(source).strip(), scanner.where()))
            scanner.value()
        elif in_variable:
            source.append(value)
        elif token == "data":
            scanner.feed(value)
            skeleton.append(value)
    return placeholders, "".join(skeleton)


# Commands whose operands bash evaluates as arithmetic, where a quoted `a[$(cmd)]` still runs
# cmd: `[[ x -eq y ]]` (and -ne, -lt...), `let`, `declare -i` and its kin, `a[i]=` subscripts.
_COMMAND_START = r"(?:^|[;&|(\n]|\bthen|\bdo|\belse)\s*"
_ARITHMETIC_COMMANDS = [
    re.compile(r"\[\[(?:(?!\]\]).)*\s-(?:eq|ne|lt|le|gt|ge)\s(?:(?!\]\]).)*\]\]"),
    re.compile(_COMMAND_START + r"let\s[^;&|\n]*"),
    re.compile(
        _COMMAND_START + r"(?:declare|typeset|local|readonly|export)(?:\s+-\w+)*\s+-\w*i[^;&|\n]*"
    ),
    re.compile(r"\w\[[^\]\n]*\]\+?="),
]


def _in_arithmetic_commands(skeleton: str) -> set[int]:
    """Indexes of the placeholders that sit in a command bash evaluates as arithmetic."""
    found: set[int] = set()
    for pattern in _ARITHMETIC_COMMANDS:
        for match in pattern.finditer(skeleton):
            found.update(int(index) for index in re.findall(r"\0(\d+)\0", match.group()))
    return found


class _ShellScanner:
    """Follows bash's quoting through a command's literal text, enough to tell where a value
    lands: in plain words, or in quotes, backticks, arithmetic, a comment, a here-document.

    It errs towards "not plain words": a value inside `"$(...)"` is reported as inside double
    quotes, though bash would start a fresh context there.
    """

    CONTEXTS = {
        "\\": "a backslash escape (`\\{{ x }}` would unquote the value)",
        "$": "`${{ x }}` (bash would read `$'...'`, an escape sequence)",
        "'": "'...' quotes",
        '"': '"..." quotes',
        "$'": "$'...' quotes",
        "`": "`...` backticks (use $( ) instead)",
        "#": "a shell comment",
        "<<": "a here-document",
        "((": "arithmetic, where bash evaluates even quoted text as code "
        "(make it a number first: `{{ params.n | int }}`)",
        "${": "a ${...} expansion, whose subscripts and offsets bash evaluates as code "
        "(make it a number first: `{{ params.n | int }}`)",
    }

    def __init__(self) -> None:
        self.state = ""  # "" (plain words) or a key of CONTEXTS
        self.escaped = False
        self.previous = "\n"  # the character before the current one
        self.depth = 0  # open brackets inside (( )) or ${ }
        self.heredoc_words: list[str] = []  # delimiters of here-documents still to start
        self.line = ""  # the current line of a here-document body
        self.line_has_value = False

    def where(self) -> str:
        """The state a value placed now lands in: "" for plain words, else a CONTEXTS key."""
        if self.state == "" and self.escaped:
            return "\\"
        if self.state == "" and self.previous == "$":
            return "$"
        return self.state

    def value(self) -> None:
        self.escaped = False
        self.previous = "x"  # a value is a word: what follows is not at a word start
        self.line_has_value = True

    def feed(self, text: str) -> None:
        index = 0
        while index < len(text):
            index = self._step(text, index)

    def _step(self, text: str, index: int) -> int:
        char = text[index]
        state = self.state
        if state == "<<":
            self._heredoc_char(char)
        elif self.escaped:
            self.escaped = False
        elif state == "'":
            self.state = "" if char == "'" else state
        elif state in ('"', "$'", "`"):
            self._quoted_char(char)
        elif state == "#":
            self.state = "" if char == "\n" else state
        elif state in ("((", "${"):
            return self._arithmetic(text, index)
        else:
            return self._plain(text, index)
        self.previous = char
        return index + 1

    def _quoted_char(self, char: str) -> None:
        closer = {'"': '"', "$'": "'", "`": "`"}[self.state]
        if char == "\\":
            self.escaped = True
        elif char == closer:
            self.state = ""

    def _arithmetic(self, text: str, index: int) -> int:
        """Inside `(( ))` or `${ }`: find the matching end, counting nested brackets."""
        char = text[index]
        opener, closer = ("(", ")") if self.state == "((" else ("{", "}")
        if char == opener:
            self.depth += 1
        elif char == closer and self.depth:
            self.depth -= 1
        elif char == closer and (closer == "}" or text.startswith("))", index)):
            end = index + (1 if closer == "}" else 2)
            self.state, self.previous = "", closer
            return end
        self.previous = char
        return index + 1

    def _plain(self, text: str, index: int) -> int:
        char = text[index]
        rest = text[index:]
        advance = 1
        if char == "\\":
            self.escaped = True
        elif rest.startswith("$'"):
            self.state, advance = "$'", 2
        elif char in "'\"`":
            self.state = char
        elif char == "#" and self.previous in " \t\n;&|()<>":
            self.state = "#"
        elif rest.startswith("((") or rest.startswith("${"):
            self.state, self.depth, advance = rest[:2], 0, 2
        elif rest.startswith("<<<"):
            advance = 3
        elif heredoc := re.match(r"<<-?\s*(['\"]?)([^\s'\";&|<>()]+)\1", rest):
            self.heredoc_words.append(heredoc.group(2))
            advance = heredoc.end()
        elif char == "\n" and self.heredoc_words:
            self.state, self.line, self.line_has_value = "<<", "", False
        self.previous = text[index + advance - 1]
        return index + advance

    def _heredoc_char(self, char: str) -> None:
        if char != "\n":
            self.line += char
            return
        if not self.line_has_value and self.line.strip("\t") == self.heredoc_words[0]:
            self.heredoc_words.pop(0)
            self.state = "<<" if self.heredoc_words else ""
        self.line, self.line_has_value = "", False
