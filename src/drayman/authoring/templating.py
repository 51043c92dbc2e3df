"""Jinja templates of shell tasks, rendered in a sandbox.

The environment is `ImmutableSandboxedEnvironment` with `StrictUndefined`: a template cannot
reach Python internals (`''.__class__` raises `jinja2.sandbox.SecurityError`), cannot mutate the
context, and an unknown name is an error instead of an empty string. There is no loader, so a
template cannot read files. Params and conf values are data: their text is never rendered as a
template itself, so a conf value of "{{ 7*7 }}" comes out literally.

jinja2 is imported inside the functions, never at module import, so `import drayman` stays fast.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from drayman.authoring.context import Context
from drayman.exceptions import DagDefinitionError

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


def render(template: str, ctx: Context) -> str:
    """`template` rendered with the names of `ctx.template_vars()`.

    Raises DagDefinitionError for an unknown name or a syntax error (naming the task), and
    lets `jinja2.sandbox.SecurityError` through for anything the sandbox refuses.
    """
    from jinja2 import TemplateSyntaxError, UndefinedError

    owner = f"template of task {ctx.task_id!r}"
    try:
        return _compile(template).render(_variables(ctx))
    except TemplateSyntaxError as exc:
        raise DagDefinitionError(f"{owner}: line {exc.lineno}: {exc.message}") from exc
    except UndefinedError as exc:
        raise DagDefinitionError(f"{owner}: {exc.message}") from exc


def syntax_error(template: str) -> str | None:
    """Why `template` does not compile, or None; lets a DAG file fail at parse time."""
    from jinja2 import TemplateSyntaxError

    try:
        _compile(template)
    except TemplateSyntaxError as exc:
        return f"line {exc.lineno}: {exc.message}"
    return None


def _variables(ctx: Context) -> dict[str, Any]:
    variables = ctx.template_vars()
    variables["params"] = _NamedDict("params", ctx.params)
    variables["conf"] = _NamedDict("conf", ctx.conf)
    return variables


@functools.lru_cache(maxsize=1024)
def _compile(template: str) -> Template:
    # Per process: a worker renders the same few templates for every try it runs.
    return _environment().from_string(template)


@functools.lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class NamedUndefined(StrictUndefined):
        """Names the template variable in the error instead of "'dict object'"."""

        @property
        def _undefined_message(self) -> str:
            obj = self._undefined_obj
            owner = "ctx" if isinstance(obj, Context) else getattr(obj, "_display_name", None)
            if self._undefined_hint is None and owner and isinstance(self._undefined_name, str):
                return f"{owner!r} has no attribute {self._undefined_name!r}"
            return str(super()._undefined_message)

    return ImmutableSandboxedEnvironment(
        undefined=NamedUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
