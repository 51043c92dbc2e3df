r"""How a Shell script refers to its values: `"${__drayman_values[0]}"`, unquoted in "...".

Values never enter a Shell task's script (`drayman.authoring.shell_arguments`): bash gets them
as its arguments, and the script's first words copy them into an array, `__drayman_values`
(`VALUES_PREFIX`), which every reference indexes with a constant subscript. Positional
parameters would not do: inside a function the command defines, or after `set --` or `shift`,
`${1}` means something else, and the value would silently be the wrong one. The array keeps its
meaning everywhere in the script; its name is reserved, and the author must not assign it.

The form of a reference depends only on where it sits, and getting it wrong never runs a value
as code, because bash does not parse the text of an expanded parameter again; the worst a wrong
guess does is split a value into words. So the scanner here is light and permissive. It
follows the quoting of the script's text to tell (value 0; a list: 3 values from 0):

    plain words, $( ), ` `, ${ }, <<<   "${__drayman_values[0]}"  "${__drayman_values[@]:0:3}"
    "..." and an unquoted here-document  ${__drayman_values[0]}    ${__drayman_values[*]:0:3}
    '...', $'...', a quoted here-document    refused: bash would print the reference literally

A list in plain words gives one word per item (none for an empty list), inside "..." its items
joined by spaces. The subscripts are digits drayman writes: no value's text enters them.

`reference_error` runs the same scanner over a template's literal text when the DAG file is
parsed, so a value inside single quotes fails the file with its line; `ScriptBuilder` runs it
over the rendered text, which also sees what macros and `{% %}` blocks produced.

One thing it tells does guard execution: whether a value may sit inside a `[...]` the script
writes, which bash would expand again as an array subscript (`in_subscript`). There it errs
towards yes: any `[` not yet closed in the value's top-level word counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jinja2 import Environment

PLAIN, DOUBLE, SINGLE, COMMENT, HEREDOC, QUOTED_HEREDOC = (
    "plain",
    "double",
    "single",
    "comment",
    "heredoc",
    "quoted heredoc",
)

# Where a reference cannot work, and what the author should write instead.
_SAFE = (
    "drayman passes every value to bash as one argument, never as shell code, so "
    '`echo {{ x }}` and `echo "{{ x }}"` are both safe'
)
REFUSED = {
    SINGLE: f"'...' quotes, where bash never expands anything: remove those quotes; {_SAFE}",
    QUOTED_HEREDOC: "a here-document with a quoted delimiter (<<'EOF'), where bash never "
    f"expands anything: write the delimiter without quotes (<<EOF); {_SAFE}",
}

_HEREDOC = re.compile(r"<<(-?)[ \t]*((?:[^\s;&|<>()]|\\.)+)")


@dataclass
class _Frame:
    """One level of nesting: its kind, and what closes it (`)`, `}`, a backtick, a quote)."""

    kind: str
    closer: str = ""
    depth: int = 0  # open ( or { inside a $( ) or ${ } frame


@dataclass
class _Heredoc:
    delimiter: str
    quoted: bool
    strip_tabs: bool


@dataclass
class Scanner:
    """Follows bash's quoting through a script's text, enough to pick a reference's form."""

    stack: list[_Frame] = field(default_factory=lambda: [_Frame(PLAIN)])
    pending: list[_Heredoc] = field(default_factory=list)  # here-documents yet to start
    line: str = ""  # the current line of a here-document body
    escaped: bool = False
    word_start: bool = True  # a `#` here starts a comment
    # `[` not yet closed in the current top-level word, quoted or not: a value placed now may
    # be inside an array subscript, which bash expands again (`a=([x]=1)`, `printf -v "a[x]"`)
    brackets: int = 0

    def where(self) -> str:
        """The context a reference placed now lands in: PLAIN, DOUBLE, SINGLE, HEREDOC..."""
        return self.stack[-1].kind

    def in_subscript(self) -> bool:
        """Whether a value placed now may land inside an array subscript (errs towards yes)."""
        return self.brackets > 0

    def value(self, text: str = "") -> None:
        """A reference to `text` was placed: part of a word, and of a here-document line."""
        self.escaped = False
        self.word_start = False
        self.line += "\0"  # a line holding a value is never the delimiter
        self._count_brackets(text)

    def _count_brackets(self, text: str) -> None:
        for char in text:
            if char == "[":
                self.brackets += 1
            elif char == "]" and self.brackets:
                self.brackets -= 1

    def feed(self, text: str) -> None:
        index = 0
        while index < len(text):
            index = self._step(text, index)

    def _step(self, text: str, index: int) -> int:
        frame = self.stack[-1]
        if frame.kind in (HEREDOC, QUOTED_HEREDOC):
            self._heredoc_char(text[index])
            return index + 1
        if frame.kind != COMMENT:
            self._count_brackets(text[index])
        if self.escaped:
            self.escaped = False
            return index + 1
        if frame.kind == SINGLE:
            if text[index] == "\\" and frame.closer == "$'":
                self.escaped = True
            elif text[index] == "'":
                self.stack.pop()
            return index + 1
        if frame.kind == COMMENT:
            if text[index] == "\n":
                self.stack.pop()
                return index  # the newline may start a here-document
            return index + 1
        if frame.kind == DOUBLE:
            return self._double(text, index)
        return self._plain(text, index)

    def _double(self, text: str, index: int) -> int:
        char = text[index]
        if char == "\\":
            self.escaped = True
        elif char == '"':
            self.stack.pop()
        else:
            return self._expansion(text, index) or index + 1
        return index + 1

    def _expansion(self, text: str, index: int) -> int:
        """Opens `$( )`, `${ }` or a backtick at `index`; 0 if none starts there."""
        if text.startswith("$(", index):
            self.stack.append(_Frame(PLAIN, ")"))
            return index + 2
        if text.startswith("${", index):
            self.stack.append(_Frame(PLAIN, "}"))
            return index + 2
        if text[index] == "`":
            self.stack.append(_Frame(PLAIN, "`"))
            return index + 1
        return 0

    def _plain(self, text: str, index: int) -> int:
        char = text[index]
        frame = self.stack[-1]
        word_start, self.word_start = self.word_start, char in " \t\n;&|()<>"
        if self.word_start and len(self.stack) == 1:
            self.brackets = 0  # a new top-level word
        opener = {")": "(", "}": "{"}.get(frame.closer)
        if char == "\\":
            self.escaped = True
        elif opener and char == opener:
            frame.depth += 1
        elif opener and char == frame.closer:
            if frame.depth:
                frame.depth -= 1
            else:
                self.stack.pop()
        elif char == "`" and frame.closer == "`":
            self.stack.pop()
        elif text.startswith("$'", index):
            self.stack.append(_Frame(SINGLE, "$'"))
            return index + 2
        elif char == "'":
            self.stack.append(_Frame(SINGLE, "'"))
        elif char == '"':
            self.stack.append(_Frame(DOUBLE, '"'))
        elif char == "#" and word_start:
            self.stack.append(_Frame(COMMENT))
        elif text.startswith("<<<", index):
            return index + 3
        elif heredoc := _HEREDOC.match(text, index):
            word = heredoc.group(2)
            unquoted = re.sub(r"\\(.)", r"\1", word).replace("'", "").replace('"', "")
            quoted = unquoted != word
            self.pending.append(_Heredoc(unquoted, quoted, heredoc.group(1) == "-"))
            return heredoc.end()
        elif char == "\n" and self.pending:
            self._start_heredoc()
        else:
            return self._expansion(text, index) or index + 1
        return index + 1

    def _start_heredoc(self) -> None:
        self.brackets = 0
        self.stack.append(_Frame(QUOTED_HEREDOC if self.pending[0].quoted else HEREDOC))
        self.line = ""

    def _heredoc_char(self, char: str) -> None:
        if char != "\n":
            self.line += char
            return
        heredoc = self.pending[0]
        line = self.line.lstrip("\t") if heredoc.strip_tabs else self.line
        self.line = ""
        if line == heredoc.delimiter:
            self.pending.pop(0)
            self.stack.pop()
            if self.pending:
                self._start_heredoc()


VALUES_ARRAY = "__drayman_values"
# On the script's first line, so bash's `line N:` in an error is still the author's line N.
VALUES_PREFIX = f'{VALUES_ARRAY}=("$@"); '


def reference(context: str, index: int, count: int | None) -> str:
    """The text that refers to value `index` (0-based; a list: `count` values from it)."""
    quoted = context not in (DOUBLE, HEREDOC)
    star = "@" if quoted else "*"
    if count is None:
        text = f"${{{VALUES_ARRAY}[{index}]}}"
    else:
        text = f"${{{VALUES_ARRAY}[{star}]:{index}:{count}}}"
    return f'"{text}"' if quoted else text


@dataclass(frozen=True)
class Placeholder:
    """A `{{ }}` of a template: its line, its expression, and the context it sits in."""

    lineno: int
    source: str
    context: str


def reference_error(template: str, env: Environment, raw_filter: str) -> str | None:
    """Why a placeholder of `template` could never be expanded by bash, or None.

    Best effort, at parse time: a placeholder the scanner misses here (one a macro or a block
    puts inside single quotes) is refused when the try renders it.
    """
    for placeholder in placeholders(template, env):
        if placeholder.context in REFUSED and not _ends_with_filter(placeholder.source, raw_filter):
            return (
                f"line {placeholder.lineno}: {{{{ {placeholder.source} }}}} is inside "
                f"{REFUSED[placeholder.context]}"
            )
    return None


def placeholders(template: str, env: Environment) -> list[Placeholder]:
    """The `{{ }}` expressions of `template`, with the context its literal text puts them in."""
    scanner = Scanner()
    found: list[Placeholder] = []
    source: list[str] = []
    in_variable = False
    for lineno, token, value in env.lex(template):
        if token == "variable_begin":
            in_variable, source = True, []
        elif token == "variable_end":
            in_variable = False
            found.append(Placeholder(lineno, "".join(source).strip(), scanner.where()))
            scanner.value()
        elif in_variable:
            source.append(value)
        elif token == "data":
            scanner.feed(value)
    return found


def _ends_with_filter(source: str, name: str) -> bool:
    return re.search(r"\|\s*" + name + r"\s*(\([^()]*\))?\s*$", source) is not None
