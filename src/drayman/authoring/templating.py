"""Jinja templates of shell tasks, rendered in a sandbox.

The environment is `ImmutableSandboxedEnvironment` with `StrictUndefined`: a template cannot
reach Python internals (`''.__class__` raises `jinja2.sandbox.SecurityError`), cannot mutate the
context, and an unknown name is an error instead of an empty string. There is no loader, so a
template cannot read files. Params and conf values are data: their text is never rendered as a
template itself, so a conf value of "{{ 7*7 }}" comes out literally.

A Shell `command` renders in an environment of its own whose every `{{ }}` output becomes
quoted shell words (`drayman.authoring.shell_quoting`): `render_command` and
`command_error`. `env` and `cwd` values reach the process as data, not shell code, and render
as plain text with `render`. Neither lets a NUL byte through: the error names the value's key.

jinja2 is imported inside the functions, never at module import, so `import drayman` stays fast.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from drayman.authoring.context import Context
from drayman.authoring.shell_quoting import NulByteError, shorten
from drayman.exceptions import DagDefinitionError, ParamsError

if TYPE_CHECKING:
    from jinja2 import Template
    from jinja2.sandbox import ImmutableSandboxedEnvironment


class _NamedDict(dict[str, Any]):
    """A dict that knows the template name it is bound to, for "'params' has no attribute"."""

    # A leading underscore keeps it out of templates' reach: the sandbox refuses such names.
    __slots__ = ("_display_name",)

    def __init__(self, display_name: str, values: dict[str, Any]) -> None:
        super().__init__(values)
        self._display_name = display_name


def render(template: str, ctx: Context, what: str = "template") -> str:
    """`template` rendered with the names of `ctx.template_vars()`, values as plain text.

    Raises DagDefinitionError for an unknown name or a syntax error (naming the task and
    `what`), ParamsError for a value with a NUL byte (naming its key), and lets
    `jinja2.sandbox.SecurityError` through for anything the sandbox refuses.
    """
    return _render(template, ctx, what, command=False)


def render_command(template: str, ctx: Context) -> str:
    """A Shell command: like `render`, but every `{{ }}` output is quoted shell words."""
    return _render(template, ctx, "command", command=True)


def syntax_error(template: str) -> str | None:
    """Why `template` does not compile, or None; lets a DAG file fail at parse time."""
    from jinja2 import TemplateSyntaxError

    try:
        _compile(template, False)
    except TemplateSyntaxError as exc:
        return f"line {exc.lineno}: {exc.message}"
    return None


def command_error(template: str) -> str | None:
    """Why a Shell command template is refused, or None: a syntax error, or a value placed where
    quoting cannot keep it one shell word (inside quotes, backticks, a here-document...)."""
    from jinja2 import TemplateSyntaxError

    from drayman.authoring.shell_placement import placement_error

    try:
        _compile(template, True)
    except TemplateSyntaxError as exc:
        return f"line {exc.lineno}: {exc.message}"
    return placement_error(template, _environment(True))


def _render(template: str, ctx: Context, what: str, *, command: bool) -> str:
    from jinja2 import TemplateSyntaxError, UndefinedError

    owner = f"{what} of task {ctx.task_id!r}"
    try:
        return _compile(template, command).render(_variables(ctx))
    except TemplateSyntaxError as exc:
        raise DagDefinitionError(f"{owner}: line {exc.lineno}: {exc.message}") from exc
    except UndefinedError as exc:
        raise DagDefinitionError(f"{owner}: {exc.message}") from exc
    except NulByteError as exc:
        raise ParamsError(
            f"{owner}: {_nul_source(exc.value, ctx)} holds a NUL byte, which no process can "
            "receive in its arguments or environment: trigger the run with a value without one"
        ) from exc


def _nul_source(value: str, ctx: Context) -> str:
    """Where a value with a NUL byte came from: `conf['x']`, `params['y'][2]`, or its text."""
    found = [path for path, leaf in _leaves(ctx) if leaf == value]
    if not found:  # the template changed the value: name every NUL-holding one
        found = [path for path, leaf in _leaves(ctx) if "\0" in leaf]
    return " or ".join(found) if found else f"the value {shorten(value)}"


def _leaves(ctx: Context) -> list[tuple[str, str]]:
    leaves: list[tuple[str, str]] = []
    stack: list[tuple[str, Any]] = [("conf", ctx.conf), ("params", ctx.params)]
    stack += [(name, getattr(ctx, name)) for name in ("run_id", "dag_id", "task_id")]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            stack += [(f"{path}[{key!r}]", item) for key, item in value.items()]
        elif isinstance(value, list | tuple):
            stack += [(f"{path}[{index}]", item) for index, item in enumerate(value)]
        elif isinstance(value, str):
            leaves.append((path, value))
    return sorted(leaves)


def _variables(ctx: Context) -> dict[str, Any]:
    variables = ctx.template_vars()
    variables["params"] = _NamedDict("params", ctx.params)
    variables["conf"] = _NamedDict("conf", ctx.conf)
    return variables


@functools.lru_cache(maxsize=1024)
def _compile(template: str, command: bool) -> Template:
    # Per process: a worker renders the same few templates for every try it runs. Always called
    # with positional arguments, so the parse-time check and the render share one entry.
    return _environment(command).from_string(template)


@functools.lru_cache(maxsize=2)
def _environment(command: bool) -> ImmutableSandboxedEnvironment:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from drayman.authoring import shell_quoting

    class NamedUndefined(StrictUndefined):
        """Names the template variable in the error instead of "'dict object'"."""

        @property
        def _undefined_message(self) -> str:
            obj = self._undefined_obj
            owner = "ctx" if isinstance(obj, Context) else getattr(obj, "_display_name", None)
            if self._undefined_hint is None and owner and isinstance(self._undefined_name, str):
                return f"{owner!r} has no attribute {self._undefined_name!r}"
            return str(super()._undefined_message)

    environment = ImmutableSandboxedEnvironment(
        undefined=NamedUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=shell_quoting.finalize if command else shell_quoting.check_text,
    )
    if command:
        environment.filters[shell_quoting.RAW_FILTER] = shell_quoting.unsafe_raw_shell
    return environment
