"""`@task`: a Python function as a task of the DAG it is called in.

    @task              a Python function; calling it inside a DAG creates a `PythonTask` and
                       returns a `ResultRef` to its future return value
    f.expand(x=[...])  dynamic fan-out: one task instance per element, at run time
    f.partial(y=1)     arguments shared by every instance of a mapped task

The arguments of a call are stored as JSON data, in which task results are refs; anything
else fails the DAG file at parse time, with its file and line.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Unpack, overload

from drayman.authoring.locations import caller_location, check_id
from drayman.authoring.options import TaskArgs, normalize_options
from drayman.authoring.tasks import CONTEXT_PARAMS, PythonTask, ResultRef, Task, resolve_dag
from drayman.exceptions import DagDefinitionError
from drayman.spec import RESULT_REF_KEY, result_ref

if TYPE_CHECKING:
    from drayman.authoring.dag import DAG


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
        dag = resolve_dag(self.dag, self.task_id, where)
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
