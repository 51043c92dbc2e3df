"""Tasks: the nodes of a DAG, and how they are linked.

    PythonTask         a call of an `@task` function (see `drayman.authoring.decorator`)
    Shell(id, cmd)     a `ShellTask`: a templated command, env and working directory
    a >> b, a << b     dependencies between tasks, results, or lists of them

A task's templates are checked when it is defined, so a typo fails the DAG file at parse time
with its file and line, not a run hours later.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar, Unpack

from drayman.authoring.callbacks import CALLBACK_NAMES, invoke_callbacks
from drayman.authoring.context import Context
from drayman.authoring.locations import caller_location, check_id
from drayman.authoring.options import TaskArgs, TaskOptions, normalize_options
from drayman.exceptions import DagDefinitionError, ParamsError
from drayman.spec import TaskKind, resolve_refs

if TYPE_CHECKING:
    from drayman.authoring.dag import DAG
    from drayman.authoring.shell_arguments import ShellCommand

CONTEXT_PARAMS = frozenset({"ctx", "context"})  # a function parameter that receives the Context


def resolve_dag(dag: DAG | None, task_id: str, where: str) -> DAG:
    # dag.py imports this module, so the DAG class is looked up only when a task is built.
    from drayman.authoring.dag import DAG, current_dag

    found = current_dag() if dag is None else dag
    if found is None:
        raise DagDefinitionError(
            f"{where}: task {task_id!r} is defined outside a DAG: "
            "create it inside `with DAG(...):` or pass dag=..."
        )
    if not isinstance(found, DAG):
        raise DagDefinitionError(f"{where}: task {task_id!r}: dag= must be a DAG, got {found!r}")
    return found


class Dependable:
    """A task or a task's result: what `>>` and `<<` link (a result stands for its task).

    One shared base, so that a list mixing tasks and results (`[a, b_result] >> c`) still
    has a useful type for mypy in a DAG file.
    """

    __slots__ = ()

    # `a >> b` makes b run after a and returns b, so `a >> b >> c` chains.
    def __rshift__(self, other: D) -> D:
        _link_all(_tasks_of(self), _tasks_of(other))
        return other

    def __lshift__(self, other: D) -> D:
        _link_all(_tasks_of(other), _tasks_of(self))
        return other

    # `[a, b] >> c`: a list has no `>>`, so Python asks the right operand.
    def __rrshift__(self, other: Sequence[Dependable]) -> Self:
        _link_all(_tasks_of(other), _tasks_of(self))
        return self

    def __rlshift__(self, other: Sequence[Dependable]) -> Self:
        _link_all(_tasks_of(self), _tasks_of(other))
        return self


D = TypeVar("D", bound=Dependable | Sequence[Dependable])


class Task(Dependable):
    """One node of a DAG. Made by `@task` functions and `Shell(...)`, not directly.

    Creating a task adds it to `dag`, else to the DAG of the enclosing `with DAG(...)` block.
    """

    kind: ClassVar[TaskKind]

    def __init__(
        self,
        task_id: str,
        *,
        dag: DAG | None,
        doc: str,
        options: Mapping[str, Any],
        where: str,
    ) -> None:
        self.where = where
        self.task_id = check_id("task", task_id, where)
        self.dag = resolve_dag(dag, task_id, where)
        self.doc = doc
        self.options = TaskOptions(**{**self.dag.task_defaults, **options})
        self.upstream_ids: set[str] = set()
        self.downstream_ids: set[str] = set()
        self.dag.add_task(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.task_id!r} of DAG {self.dag.dag_id!r}>"

    def spec_fields(self) -> dict[str, Any]:
        """The `TaskSpec` fields particular to this kind of task."""
        return {}

    def run_callback(self, name: str, ctx: Context, error: str | None) -> None:
        """Run this task's `name` callbacks ("on_success", "on_failure" or "on_retry")."""
        if name not in CALLBACK_NAMES:
            raise ValueError(f"unknown task callback {name!r}: use one of {CALLBACK_NAMES}")
        invoke_callbacks(getattr(self.options, name), ctx, error)


@dataclass(frozen=True, eq=False)
class ResultRef(Dependable):
    """The future return value of a Python task.

    Pass it to another task to use the value (and depend on the task), or use it with `>>`
    as the task itself. The result of a mapped task is the list of all its instances' results.
    """

    task: Task


def _tasks_of(value: object) -> list[Task]:
    items = value if isinstance(value, list | tuple) else [value]
    tasks = []
    for item in items:
        if isinstance(item, ResultRef):
            item = item.task
        if not isinstance(item, Task):
            raise DagDefinitionError(
                f"{caller_location()}: cannot make a dependency with {item!r}: "
                "use tasks, task results, or lists of them"
            )
        tasks.append(item)
    return tasks


def _link_all(upstream: list[Task], downstream: list[Task]) -> None:
    for up in upstream:
        for down in downstream:
            _link(up, down)


def _link(upstream: Task, downstream: Task) -> None:
    if upstream.dag is not downstream.dag:
        raise DagDefinitionError(
            f"{caller_location()}: task {downstream.task_id!r} of DAG {downstream.dag.dag_id!r} "
            f"cannot depend on task {upstream.task_id!r} of DAG {upstream.dag.dag_id!r}"
        )
    upstream.downstream_ids.add(downstream.task_id)
    downstream.upstream_ids.add(upstream.task_id)


class PythonTask(Task):
    """A call of an `@task` function, with its arguments as JSON in which results are refs."""

    kind = "python"

    def __init__(
        self,
        task_id: str,
        fn: Callable[..., Any],
        *,
        args: dict[str, Any],
        expand: dict[str, Any] | None,
        upstream: Iterable[Task],
        dag: DAG,
        doc: str,
        options: Mapping[str, Any],
        where: str,
    ) -> None:
        super().__init__(task_id, dag=dag, doc=doc, options=options, where=where)
        self.fn = fn
        # computed once at import: a worker forks a child per try, and every child inherits it
        self._signature = inspect.signature(fn)
        self._takes_context = [n for n in self._signature.parameters if n in CONTEXT_PARAMS]
        self.args = args
        self.expand = expand
        for task in upstream:
            _link(task, self)

    def spec_fields(self) -> dict[str, Any]:
        return {"args": copy.deepcopy(self.args), "expand": copy.deepcopy(self.expand)}

    def call(self, ctx: Context, upstream_results: Mapping[str, Any], map_index: int) -> Any:
        """Run the function once: refs resolved, `ctx` injected, this instance's elements.

        `upstream_results` maps task id -> result (a list for a mapped task); `map_index` is
        -1 for a task that is not mapped.
        """
        results = dict(upstream_results)
        arguments: dict[str, Any] = resolve_refs(self.args, results)
        if self.expand is not None:
            arguments.update(self._mapped_arguments(results, map_index))
        for name in self._takes_context:
            arguments[name] = ctx
        # BoundArguments puts positional-only and *args values back in position.
        bound = inspect.BoundArguments(self._signature, arguments)
        return self.fn(*bound.args, **bound.kwargs)

    def _mapped_arguments(self, results: dict[str, Any], map_index: int) -> dict[str, Any]:
        """Element `map_index` of each expanded argument (they are zipped, not crossed)."""
        chosen: dict[str, Any] = {}
        for name, value in (self.expand or {}).items():
            values = resolve_refs(value, results)
            if not isinstance(values, list):
                raise TypeError(
                    f"task {self.task_id!r}: expand argument {name!r} must resolve to a list, "
                    f"got {type(values).__name__}"
                )
            if not 0 <= map_index < len(values):
                raise IndexError(
                    f"task {self.task_id!r}: map index {map_index} is outside expand argument "
                    f"{name!r} ({len(values)} elements)"
                )
            chosen[name] = values[map_index]
        return chosen


class ShellTask(Task):
    """A shell command; `command`, `env` values and `cwd` are Jinja templates.

    Exported as `Shell`: `Shell("extract", "etl extract --day {{ ds }}", env={...}, cwd=...)`.
    Every value the command's template puts in is passed to bash as an argument, so a run's
    conf is data, never shell code (`drayman.authoring.shell_arguments`); `env` and `cwd` are
    plain text, and `cwd` is a directory inside the bundle.
    """

    kind = "shell"

    def __init__(
        self,
        task_id: str,
        command: str,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        dag: DAG | None = None,
        doc: str = "",
        **options: Unpack[TaskArgs],
    ) -> None:
        where = caller_location()
        owner = f"{where}: task {task_id!r}"
        self.command = _template(command, "command", owner)
        self.env = {
            _env_name(key, owner): _template(value, f"env[{key!r}]", owner)
            for key, value in (env or {}).items()
        }
        self.cwd = None if cwd is None else _template(cwd, "cwd", owner)
        if self.cwd is not None and "{" not in self.cwd and _outside_bundle(self.cwd):
            raise DagDefinitionError(f"{owner}: cwd {self.cwd!r} {_CWD_RULE}")
        normalized = normalize_options(options, owner)
        super().__init__(task_id, dag=dag, doc=doc, options=normalized, where=where)

    def spec_fields(self) -> dict[str, Any]:
        return {"command": self.command, "env": dict(self.env), "cwd": self.cwd}

    def render(self, ctx: Context) -> tuple[ShellCommand, dict[str, str], str | None]:
        """The command, env and cwd with their templates rendered for this try."""
        from drayman.authoring.templating import render, render_command

        env = {key: render(value, ctx, f"env[{key!r}]") for key, value in self.env.items()}
        cwd = None if self.cwd is None else _inside_bundle(render(self.cwd, ctx, "cwd"), ctx)
        return render_command(self.command, ctx), env, cwd


Shell = ShellTask


def _template(value: object, what: str, owner: str) -> str:
    """`value` if it is a string that compiles as a template; checked at parse time."""
    from drayman.authoring.templating import command_error, syntax_error

    if not isinstance(value, str) or (what == "command" and not value.strip()):
        raise DagDefinitionError(f"{owner}: {what} must be a non-empty string, got {value!r}")
    if "\0" in value:
        raise DagDefinitionError(f"{owner}: {what} holds a NUL byte, which no process can receive")
    problem = command_error(value) if what == "command" else syntax_error(value)
    if problem:
        raise DagDefinitionError(f"{owner}: template in {what}: {problem}")
    return value


_CWD_RULE = (
    "is outside the bundle: cwd is a directory relative to the bundle's root, so it may not "
    "be absolute or hold a `..` segment; to work elsewhere, `cd` in the command"
)


def _outside_bundle(cwd: str) -> bool:
    path = PurePosixPath(cwd)
    return path.is_absolute() or ".." in path.parts


def _inside_bundle(cwd: str, ctx: Context) -> str:
    """`cwd` if it names a directory inside the bundle (a value from a run cannot leave it)."""
    if _outside_bundle(cwd):
        raise ParamsError(f"cwd of task {ctx.task_id!r} renders to {cwd!r}, which {_CWD_RULE}")
    return cwd


def _env_name(key: object, owner: str) -> str:
    if not isinstance(key, str) or not key or "=" in key or "\0" in key:
        raise DagDefinitionError(f"{owner}: invalid environment variable name {key!r}")
    return key
