"""Jinja templates of shell tasks, rendered in a sandbox.

The environment is `ImmutableSandboxedEnvironment` with `StrictUndefined`: a template cannot
reach Python internals (`''.__class__` raises `jinja2.sandbox.SecurityError`), cannot mutate the
context, and an unknown name is an error instead of an empty string. There is no loader, so a
template cannot read files. Params and conf values are data: their text is never rendered as a
template itself, so a conf value of "{{ 7*7 }}" comes out literally.

A Shell `command` renders in an environment of its own whose every `{{ }}` output becomes an
argument of bash that the script refers to (`drayman.authoring.shell_arguments`):
`render_command` and `command_error`. `env` and `cwd` values reach the process as data, not
shell code, and render as plain text with `render`. Values bash must not receive (a NUL byte,
a subscript arithmetic would run) fail the render, with an error that names the value's key.

jinja2 is imported inside the functions, never at module import, so `import drayman` stays fast.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from drayman.authoring.context import Context
from drayman.authoring.shell_arguments import (
    RAW_FILTER,
    VALUES_KEY,
    ReferenceContextError,
    ScriptBuilder,
    ShellCommand,
    UnsafeValueError,
    Values,
    shorten,
)
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
    `what`), ParamsError for a value bash must not receive (naming its key), and lets
    `jinja2.sandbox.SecurityError` through for anything the sandbox refuses.
    """
    return _render(template, ctx, what, _variables(ctx), command=False)


def render_command(template: str, ctx: Context) -> ShellCommand:
    """A Shell command: its script, where every `{{ }}` output is a reference to an argument,
    and those arguments. Raises like `render`, and DagDefinitionError for a value that lands
    where bash never expands one (inside '...')."""
    values = Values()
    variables = {**_variables(ctx), VALUES_KEY: values}
    marked = _render(template, ctx, "command", variables, command=True)
    try:
        return ScriptBuilder(values).build(marked)
    except ReferenceContextError as exc:
        raise DagDefinitionError(f"command of task {ctx.task_id!r}: {exc}") from exc
    except UnsafeValueError as exc:
        raise _unsafe_value(exc, ctx, "command") from exc


def syntax_error(template: str) -> str | None:
    """Why `template` does not compile, or None; lets a DAG file fail at parse time."""
    from jinja2 import TemplateSyntaxError

    try:
        _compile(template, False)
    except TemplateSyntaxError as exc:
        return f"line {exc.lineno}: {exc.message}"
    return None


def command_error(template: str) -> str | None:
    """Why a Shell command template is refused, or None: a syntax error, or a value inside
    quotes where bash would never expand it (`'{{ x }}'`)."""
    from jinja2 import TemplateSyntaxError

    from drayman.authoring.shell_references import reference_error

    try:
        _compile(template, True)
    except TemplateSyntaxError as exc:
        return f"line {exc.lineno}: {exc.message}"
    return reference_error(template, _environment(True), RAW_FILTER)


def _render(
    template: str, ctx: Context, what: str, variables: dict[str, Any], *, command: bool
) -> str:
    from jinja2 import TemplateSyntaxError, UndefinedError

    owner = f"{what} of task {ctx.task_id!r}"
    try:
        return _compile(template, command).render(variables)
    except TemplateSyntaxError as exc:
        raise DagDefinitionError(f"{owner}: line {exc.lineno}: {exc.message}") from exc
    except UndefinedError as exc:
        raise DagDefinitionError(f"{owner}: {exc.message}") from exc
    except UnsafeValueError as exc:
        raise _unsafe_value(exc, ctx, what) from exc


def _unsafe_value(exc: UnsafeValueError, ctx: Context, what: str) -> ParamsError:
    return ParamsError(f"{what} of task {ctx.task_id!r}: {_source(exc, ctx)} {exc.problem}")


def _source(exc: UnsafeValueError, ctx: Context) -> str:
    """Where a refused value came from: `conf['x']`, `params['y'][2]`, or its text."""
    found = [path for path, leaf in _leaves(ctx) if leaf == exc.value]
    if not found:  # the template changed the value: name every leaf the rule blames
        found = [path for path, leaf in _leaves(ctx) if exc.applies(leaf)]
    return " or ".join(found) if found else f"the value {shorten(exc.value)}"


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
    from jinja2 import StrictUndefined, pass_context
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from drayman.authoring import shell_arguments

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
        finalize=(
            pass_context(shell_arguments.finalize) if command else shell_arguments.check_text
        ),
    )
    if command:
        environment.filters[RAW_FILTER] = shell_arguments.unsafe_raw_shell
    return environment
