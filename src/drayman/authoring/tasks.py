"""Tasks: the nodes of a DAG, and the ways a DAG file creates and links them.

    @task              a Python function; calling it inside a DAG creates a `PythonTask` and
                       returns a `ResultRef` to its future return value
    f.expand(x=[...])  dynamic fan-out: one task instance per element, at run time
    Shell(id, cmd)     a `ShellTask`: a templated command, env and working directory
    a >> b, a << b     dependencies between tasks, results, or lists of them

Options (retries, retry_delay, ...) are checked when the task is defined, so a typo fails the
DAG file at parse time with its file and line, not a run hours later.
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypedDict, TypeVar, Unpack, overload

from drayman.authoring.context import Context
from drayman.exceptions import DagDefinitionError
from drayman.spec import RESULT_REF_KEY, TRIGGER_RULES, TaskKind, resolve_refs, result_ref

if TYPE_CHECKING:
    from drayman.authoring.dag import DAG

Callback = Callable[..., object]
CallbackArg = Callback | Sequence[Callback]
CALLBACK_NAMES: tuple[str, ...] = ("on_success", "on_failure", "on_retry")
CONTEXT_PARAMS = frozenset({"ctx", "context"})  # a function parameter that receives the Context
_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,250}")


class TaskDefaultArgs(TypedDict, total=False):
    """Task options a DAG may set for all of its tasks, as keyword arguments of `DAG(...)`."""

    retries: int
    retry_delay: timedelta | float
    retry_backoff: bool
    max_retry_delay: timedelta | float | None
    execution_timeout: timedelta | float | None
    queue: str
    pool: str
    pool_slots: int
    priority: int
    trigger_rule: str
    on_retry: CallbackArg | None


class TaskArgs(TaskDefaultArgs, total=False):
    """Every task option: the DAG-level defaults plus the task's own callbacks."""

    on_success: CallbackArg | None
    on_failure: CallbackArg | None


@dataclass(frozen=True)
class TaskOptions:
    """A task's scheduling options, normalized: durations in seconds, callbacks as tuples."""

    retries: int = 0
    retry_delay_s: float = 300.0
    retry_backoff: bool = False  # exponential: retry_delay * 2**(try-1), capped by max_retry_delay
    max_retry_delay_s: float | None = None
    execution_timeout_s: float | None = None
    queue: str = "default"
    pool: str = "default_pool"
    pool_slots: int = 1
    priority: int = 1
    trigger_rule: str = "all_success"
    on_success: tuple[Callback, ...] = ()
    on_failure: tuple[Callback, ...] = ()
    on_retry: tuple[Callback, ...] = ()


# ----------------------------------------------------------------------------- option checks
# Each check returns the normalized value or raises ValueError saying what it expected.


def _count(minimum: int) -> Callable[[object], int]:
    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"must be an integer >= {minimum}, got {value!r}")
        return value

    return check


def _seconds(*, optional: bool, positive: bool = False) -> Callable[[object], float | None]:
    def check(value: object) -> float | None:
        if value is None and optional:
            return None
        if isinstance(value, timedelta):
            seconds = value.total_seconds()
        elif isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        else:
            raise ValueError(f"must be a timedelta or a number of seconds, got {value!r}")
        if not math.isfinite(seconds) or seconds < 0 or (positive and seconds == 0):
            raise ValueError(f"must be {'> 0' if positive else '>= 0'} seconds, got {value!r}")
        return seconds

    return check


def _integer(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be an integer, got {value!r}")
    return value


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be True or False, got {value!r}")
    return value


def _name(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be a non-empty string, got {value!r}")
    return value


def _trigger_rule(value: object) -> str:
    if value not in TRIGGER_RULES:
        raise ValueError(f"must be one of {', '.join(sorted(TRIGGER_RULES))}; got {value!r}")
    return str(value)


def check_callbacks(value: object) -> tuple[Callback, ...]:
    """A callback option as a tuple: None, one callable, or a list of them (notifiers)."""
    if value is None:
        return ()
    items = value if isinstance(value, list | tuple) else [value]
    callbacks: list[Callback] = []
    for item in items:
        if not callable(item):
            raise ValueError(f"must be a callable or a list of callables, got {item!r}")
        callbacks.append(item)
    return tuple(callbacks)


# user-facing option name -> (TaskOptions field, check)
_OPTIONS: dict[str, tuple[str, Callable[[object], Any]]] = {
    "retries": ("retries", _count(0)),
    "retry_delay": ("retry_delay_s", _seconds(optional=False)),
    "retry_backoff": ("retry_backoff", _flag),
    "max_retry_delay": ("max_retry_delay_s", _seconds(optional=True)),
    "execution_timeout": ("execution_timeout_s", _seconds(optional=True, positive=True)),
    "queue": ("queue", _name),
    "pool": ("pool", _name),
    "pool_slots": ("pool_slots", _count(1)),
    "priority": ("priority", _integer),
    "trigger_rule": ("trigger_rule", _trigger_rule),
    "on_success": ("on_success", check_callbacks),
    "on_failure": ("on_failure", check_callbacks),
    "on_retry": ("on_retry", check_callbacks),
}


def normalize_options(
    raw: Mapping[str, object], owner: str, *, also_valid: Iterable[str] = ()
) -> dict[str, Any]:
    """Task options checked and keyed by `TaskOptions` field; `owner` prefixes every error.

    `also_valid` are other keywords of the caller, used only to suggest a spelling.
    """
    normalized: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in _OPTIONS:
            hint = did_you_mean(name, [*_OPTIONS, *also_valid])
            valid = ", ".join(_OPTIONS)
            raise DagDefinitionError(
                f"{owner}: unknown keyword {name!r}{hint}; task options are {valid}"
            )
        field_name, check = _OPTIONS[name]
        try:
            normalized[field_name] = check(value)
        except ValueError as exc:
            raise DagDefinitionError(f"{owner}: {name} {exc}") from None
    return normalized


# ------------------------------------------------------------------ locations, ids, messages


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


def _resolve_dag(dag: DAG | None, task_id: str, where: str) -> DAG:
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


# ------------------------------------------------------------------------------ callbacks


def invoke_callbacks(callbacks: Sequence[Callback], ctx: Context, detail: str | None) -> None:
    """Call each callback with `ctx`, and `detail` too if it accepts a second argument.

    Every callback gets its turn even when one raises (a failing notifier must not silence
    the next one); then the first error is raised, with the others as notes.
    """
    errors: list[Exception] = []
    for callback in callbacks:
        try:
            if _accepts_two(callback):
                callback(ctx, detail)
            else:
                callback(ctx)
        except Exception as exc:
            errors.append(exc)
    if errors:
        for other in errors[1:]:
            errors[0].add_note(f"another callback failed too: {other!r}")
        raise errors[0]


def _accepts_two(callback: Callback) -> bool:
    try:
        inspect.signature(callback).bind(None, None)
    except (TypeError, ValueError):  # ValueError: a builtin without a signature
        return False
    return True


# ----------------------------------------------------------------------------- tasks


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
        self.dag = _resolve_dag(dag, task_id, where)
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
        normalized = normalize_options(options, owner)
        super().__init__(task_id, dag=dag, doc=doc, options=normalized, where=where)

    def spec_fields(self) -> dict[str, Any]:
        return {"command": self.command, "env": dict(self.env), "cwd": self.cwd}

    def render(self, ctx: Context) -> tuple[str, dict[str, str], str | None]:
        """The command, env and cwd with their templates rendered for this try."""
        from drayman.authoring.templating import render

        env = {key: render(value, ctx) for key, value in self.env.items()}
        cwd = None if self.cwd is None else render(self.cwd, ctx)
        return render(self.command, ctx), env, cwd


Shell = ShellTask


def _template(value: object, what: str, owner: str) -> str:
    """`value` if it is a string that compiles as a template; checked at parse time."""
    from drayman.authoring.templating import syntax_error

    if not isinstance(value, str) or (what == "command" and not value.strip()):
        raise DagDefinitionError(f"{owner}: {what} must be a non-empty string, got {value!r}")
    problem = syntax_error(value)
    if problem:
        raise DagDefinitionError(f"{owner}: template in {what}: {problem}")
    return value


def _env_name(key: object, owner: str) -> str:
    if not isinstance(key, str) or not key or "=" in key or "\0" in key:
        raise DagDefinitionError(f"{owner}: invalid environment variable name {key!r}")
    return key


# ------------------------------------------------------------------------ the @task decorator


class TaskFunction:
    """A function decorated with `@task`. Calling it inside a DAG creates a task.

    `f(...)` returns a `ResultRef`; `f.expand(x=[...])` and `f.partial(y=1).expand(x=...)`
    create a mapped task. The undecorated function stays reachable as `f.fn` (for unit tests).
    """

    __name__: str  # copied from the function by functools.update_wrapper

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        task_id: str,
        doc: str,
        dag: DAG | None,
        options: Mapping[str, Any],
        where: str,
    ) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.task_id = check_id("task", task_id, where)
        self.doc = doc
        self.dag = dag
        self.options = options
        signature = inspect.signature(fn)
        # ctx/context is filled in at run time, so a call in the DAG file never passes it.
        self._signature = signature.replace(
            parameters=[p for p in signature.parameters.values() if p.name not in CONTEXT_PARAMS]
        )

    def __repr__(self) -> str:
        return f"<task function {self.task_id!r}>"

    def __call__(self, *args: Any, **kwargs: Any) -> ResultRef:
        where = caller_location()
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise DagDefinitionError(f"{where}: task {self.task_id!r}: {exc}") from None
        return self._create(where, dict(bound.arguments), None)

    def partial(self, **kwargs: Any) -> PartialTaskFunction:
        """Fix some arguments for every instance of a mapped task; then call `.expand`."""
        return PartialTaskFunction(self, kwargs)

    def expand(self, **kwargs: Any) -> ResultRef:
        """A mapped task: one instance per element of each argument, zipped by position.

        Each value is a list or a `ResultRef` to a list produced at run time.
        """
        return PartialTaskFunction(self, {}).expand(**kwargs)

    def _create(
        self, where: str, arguments: dict[str, Any], expanded: dict[str, Any] | None
    ) -> ResultRef:
        dag = _resolve_dag(self.dag, self.task_id, where)
        # Calling one function twice in a DAG gives `f`, `f__1`, ... as Airflow does.
        task_id = dag.unique_task_id(self.task_id)
        refs: list[Task] = []
        owner = f"{where}: task {task_id!r}"
        args = {
            name: _to_json(value, f"argument {name!r}", refs, owner)
            for name, value in arguments.items()
        }
        expand = None
        if expanded is not None:
            expand = {
                name: _to_json(value, f"expand argument {name!r}", refs, owner)
                for name, value in expanded.items()
            }
        task = PythonTask(
            task_id,
            self.fn,
            args=args,
            expand=expand,
            upstream=refs,
            dag=dag,
            doc=self.doc,
            options=self.options,
            where=where,
        )
        return ResultRef(task)


class PartialTaskFunction:
    """`f.partial(...)`: arguments shared by every instance of a mapped task."""

    def __init__(self, function: TaskFunction, fixed: dict[str, Any]) -> None:
        self.function = function
        self.fixed = fixed

    def expand(self, **kwargs: Any) -> ResultRef:
        """See `TaskFunction.expand`."""
        where = caller_location()
        owner = f"{where}: task {self.function.task_id!r}"
        _check_expand(self.function, self.fixed, kwargs, owner)
        try:
            bound = self.function._signature.bind(**self.fixed, **kwargs)
        except TypeError as exc:
            raise DagDefinitionError(f"{owner}: {exc}") from None
        fixed = {name: value for name, value in bound.arguments.items() if name not in kwargs}
        return self.function._create(where, fixed, kwargs)


def _check_expand(
    function: TaskFunction, fixed: Mapping[str, Any], expanded: Mapping[str, Any], owner: str
) -> None:
    if not expanded:
        raise DagDefinitionError(f"{owner}: expand() needs at least one keyword argument")
    named = {
        p.name
        for p in function._signature.parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    lengths = set()
    for name, value in expanded.items():
        if name in fixed:
            raise DagDefinitionError(f"{owner}: {name!r} is given to both partial() and expand()")
        if name not in named:
            raise DagDefinitionError(f"{owner}: expand() got {name!r}, not a named parameter")
        if not isinstance(value, ResultRef | list | tuple):
            raise DagDefinitionError(
                f"{owner}: expand argument {name!r} must be a list or a task result, "
                f"got {type(value).__name__}"
            )
        if isinstance(value, list | tuple):
            lengths.add(len(value))
    if len(lengths) > 1:
        raise DagDefinitionError(
            f"{owner}: expand() lists have different lengths {sorted(lengths)}: "
            "they are zipped, one instance per position"
        )


def _to_json(value: object, path: str, refs: list[Task], owner: str) -> Any:
    """`value` as JSON data with results as refs; the referenced tasks are added to `refs`."""
    if isinstance(value, ResultRef):
        refs.append(value.task)
        return result_ref(value.task.task_id)
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, list | tuple):
        return [_to_json(item, f"{path}[{i}]", refs, owner) for i, item in enumerate(value)]
    if isinstance(value, dict):
        return _dict_to_json(value, path, refs, owner)
    raise DagDefinitionError(
        f"{owner}: {path} is {_describe(value)}, which is not JSON data "
        f"(str, int, float, bool, None, list, dict) nor a task result{_hint(value)}"
    )


def _dict_to_json(value: dict[Any, Any], path: str, refs: list[Task], owner: str) -> Any:
    if set(value) == {RESULT_REF_KEY}:
        raise DagDefinitionError(f"{owner}: {path} uses the reserved key {RESULT_REF_KEY!r}")
    converted = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise DagDefinitionError(f"{owner}: {path} has a non-string key {key!r}")
        converted[key] = _to_json(item, f"{path}[{key!r}]", refs, owner)
    return converted


def _describe(value: object) -> str:
    if isinstance(value, float):
        return repr(value)
    return f"a {type(value).__name__}"


def _hint(value: object) -> str:
    if isinstance(value, TaskFunction):
        return f"; did you mean to call it: {value.task_id}()?"
    if isinstance(value, Task):
        return "; to run after a task without using its result, write `a >> b`"
    return ""


@overload
def task(fn: Callable[..., Any], /) -> TaskFunction: ...


@overload
def task(
    fn: None = None,
    /,
    *,
    task_id: str | None = None,
    doc: str | None = None,
    dag: DAG | None = None,
    **options: Unpack[TaskArgs],
) -> Callable[[Callable[..., Any]], TaskFunction]: ...


def task(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    task_id: str | None = None,
    doc: str | None = None,
    dag: DAG | None = None,
    **options: Unpack[TaskArgs],
) -> TaskFunction | Callable[[Callable[..., Any]], TaskFunction]:
    """Make a function a task: `@task` or `@task(retries=3, ...)`.

    Options: task_id (default: the function's name), doc (default: its docstring), dag, and
    the task options retries, retry_delay, retry_backoff, max_retry_delay, execution_timeout,
    queue, pool, pool_slots, priority, trigger_rule, on_success, on_failure, on_retry.
    A parameter named `ctx` or `context` receives the run's `Context`.
    """
    where = caller_location()
    if fn is not None and not callable(fn):
        raise DagDefinitionError(
            f"{where}: @task got {fn!r}; give options as keywords, e.g. @task(task_id='load')"
        )

    def decorate(function: Callable[..., Any]) -> TaskFunction:
        name = task_id if task_id is not None else getattr(function, "__name__", "")
        owner = f"{where}: task {name!r}"
        return TaskFunction(
            function,
            task_id=name,
            doc=(inspect.getdoc(function) or "") if doc is None else doc,
            dag=dag,
            options=normalize_options(options, owner),
            where=where,
        )

    return decorate if fn is None else decorate(fn)
