"""Tasks: @task, Shell, dependencies, mapped tasks, argument checks, and the runtime helpers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from drayman import DAG, Shell, task
from drayman.authoring.context import Context
from drayman.authoring.dag import reset_registry
from drayman.authoring.decorator import TaskFunction
from drayman.authoring.shell_arguments import ShellCommand
from drayman.authoring.tasks import PythonTask, ResultRef, ShellTask
from drayman.exceptions import DagDefinitionError


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    reset_registry()
    yield
    reset_registry()


def make_ctx(**overrides: object) -> Context:
    moment = datetime(2026, 1, 2, 3, tzinfo=UTC)
    values: dict[str, object] = {
        "dag_id": "d",
        "run_id": "r",
        "task_id": "t",
        "map_index": -1,
        "try_number": 1,
        "max_tries": 1,
        "run_type": "manual",
        "logical_date": moment,
        "data_interval_start": moment,
        "data_interval_end": moment,
        "timezone": "UTC",
        "bundle_version": "v1",
    }
    values.update(overrides)
    return Context(**values)  # type: ignore[arg-type]


def upstream(dag: DAG) -> dict[str, set[str]]:
    return {task_id: t.upstream_ids for task_id, t in dag.tasks.items()}


# ------------------------------------------------------------------------------ @task


def test_bare_and_configured_decorator() -> None:
    @task
    def plain() -> None:
        """Does nothing."""

    @task(task_id="custom", retries=5, retry_delay=45, execution_timeout=timedelta(minutes=10))
    def configured() -> None: ...

    assert isinstance(plain, TaskFunction) and isinstance(configured, TaskFunction)
    with DAG("d") as dag:
        plain()
        configured()
    first, second = dag.get_task("plain"), dag.get_task("custom")
    assert first.doc == "Does nothing."
    assert first.options.retries == 0 and first.options.retry_delay_s == 300.0
    assert second.options.retries == 5
    assert second.options.retry_delay_s == 45.0
    assert second.options.execution_timeout_s == 600.0


def test_undecorated_function_stays_reachable() -> None:
    @task
    def double(x: int) -> int:
        return 2 * x

    assert double.fn(4) == 8
    assert double.__name__ == "double"


def test_calling_twice_suffixes_the_id() -> None:
    @task
    def step() -> None: ...

    with DAG("d") as dag:
        refs = [step(), step(), step()]
    assert [ref.task.task_id for ref in refs] == ["step", "step__1", "step__2"]
    assert list(dag.tasks) == ["step", "step__1", "step__2"]


def test_arguments_are_bound_to_the_signature() -> None:
    @task
    def f(a: int, b: str = "x", *, c: list[int], ctx: Context) -> None: ...

    with DAG("d"):
        ref = f(1, c=[1, (2, 3)])
    assert isinstance(ref.task, PythonTask)
    assert ref.task.args == {"a": 1, "c": [1, [2, 3]]}  # defaults stay the function's


def test_result_refs_become_upstream_and_refs_nested() -> None:
    @task
    def source() -> int:
        return 1

    @task
    def sink(data: dict[str, Any]) -> None: ...

    with DAG("d") as dag:
        a, b = source(), source()
        sink({"first": a, "all": [a, b], "n": 3})
    sink_task = dag.get_task("sink")
    assert isinstance(sink_task, PythonTask)
    assert sink_task.args == {
        "data": {
            "first": {"__result__": "source"},
            "all": [{"__result__": "source"}, {"__result__": "source__1"}],
            "n": 3,
        }
    }
    assert sink_task.upstream_ids == {"source", "source__1"}
    assert dag.get_task("source").downstream_ids == {"sink"}


def test_missing_argument_is_reported() -> None:
    @task
    def load(stats: dict[str, int]) -> None: ...

    with (
        pytest.raises(
            DagDefinitionError, match="task 'load': missing a required argument: 'stats'"
        ),
        DAG("d"),
    ):
        load()


def test_ctx_is_never_passed_by_the_dag_file() -> None:
    @task
    def f(ctx: Context) -> None: ...

    with pytest.raises(DagDefinitionError, match="too many positional arguments"), DAG("d"):
        f(1)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (datetime(2026, 1, 1), "argument 'x' is a datetime, which is not JSON data"),
        ({"k": {1, 2}}, "argument 'x'\\['k'\\] is a set, which is not JSON data"),
        ([1, float("nan")], "argument 'x'\\[1\\] is nan, which is not JSON data"),
        ({1: "a"}, "argument 'x' has a non-string key 1"),
        ({"__result__": "t"}, "argument 'x' uses the reserved key '__result__'"),
    ],
)
def test_non_json_arguments(value: object, message: str) -> None:
    @task
    def f(x: object) -> None: ...

    with pytest.raises(DagDefinitionError, match=r"\.py:\d+: task 'f': " + message), DAG("d"):
        f(value)


def test_passing_an_uncalled_task_function_hints_at_the_call() -> None:
    @task
    def transform() -> None: ...

    @task
    def load(stats: object) -> None: ...

    hint = r"did you mean to call it: transform\(\)"
    with pytest.raises(DagDefinitionError, match=hint), DAG("d"):
        load(transform)


def test_passing_a_shell_task_hints_at_rshift() -> None:
    @task
    def load(stats: object) -> None: ...

    with pytest.raises(DagDefinitionError, match="write `a >> b`"), DAG("d"):
        load(Shell("s", "true"))


def test_task_outside_a_dag() -> None:
    @task
    def f() -> None: ...

    with pytest.raises(DagDefinitionError, match="task 'f' is defined outside a DAG"):
        f()
    with pytest.raises(DagDefinitionError, match="task 's' is defined outside a DAG"):
        Shell("s", "true")


def test_decorator_option_errors() -> None:
    with pytest.raises(DagDefinitionError, match="task 'f': unknown keyword 'retires'"):

        @task(retires=2)  # type: ignore[call-overload]
        def f() -> None: ...

    with pytest.raises(DagDefinitionError, match=r"trigger_rule must be one of all_done, .*always"):

        @task(trigger_rule="sometimes")
        def g() -> None: ...

    with pytest.raises(DagDefinitionError, match="give options as keywords"):
        task("load")  # type: ignore[call-overload]


@pytest.mark.parametrize("bad_id", ["", "a b", "a/b", "x" * 251])
def test_bad_task_ids(bad_id: str) -> None:
    with pytest.raises(DagDefinitionError, match="invalid task id"), DAG("d"):
        Shell(bad_id, "true")
    with pytest.raises(DagDefinitionError, match="invalid task id"):

        @task(task_id=bad_id)
        def f() -> None: ...


def test_duplicate_task_id() -> None:
    with pytest.raises(DagDefinitionError) as caught, DAG("d"):
        Shell("extract", "true")
        Shell("extract", "false")
    assert "DAG 'd' already has a task 'extract' (defined at " in str(caught.value)


# ------------------------------------------------------------------------- dependencies


def test_dependency_syntaxes() -> None:
    with DAG("d") as dag:
        a, b, c, d, e, f = (Shell(name, "true") for name in "abcdef")
        assert (a >> b) is b
        assert (c << b) is b
        assert (a >> [d, e]) == [d, e]
        assert ([d, e] >> f) is f
        assert ([a] << f) is f
    assert upstream(dag) == {
        "a": {"f"},
        "b": {"a"},
        "c": {"b"},
        "d": {"a"},
        "e": {"a"},
        "f": {"d", "e"},
    }
    assert dag.get_task("a").downstream_ids == {"b", "d", "e"}
    assert dag.get_task("b").downstream_ids == {"c"}


def test_chains() -> None:
    with DAG("d") as dag:
        a, b, c, d = (Shell(name, "true") for name in "abcd")
        a >> b >> [c, d]
    assert upstream(dag) == {"a": set(), "b": {"a"}, "c": {"b"}, "d": {"b"}}


def test_result_refs_in_dependencies() -> None:
    @task
    def transform() -> int:
        return 1

    @task
    def load(stats: int) -> None: ...

    @task
    def report() -> None: ...

    with DAG("d") as dag:
        extract = Shell("extract", "true")
        done = Shell("done", "true")
        result = extract >> load(transform())
        assert isinstance(result, ResultRef)
        result >> done
        [report(), result] >> Shell("last", "true")
        done << report()
    assert upstream(dag) == {
        "extract": set(),
        "transform": set(),
        "load": {"extract", "transform"},
        "done": {"load", "report__1"},
        "report": set(),
        "last": {"report", "load"},
        "report__1": set(),
    }


def test_dependency_with_something_else() -> None:
    with DAG("d"):
        a = Shell("a", "true")
        with pytest.raises(
            DagDefinitionError, match=r"\.py:\d+: cannot make a dependency with 'b'"
        ):
            a >> ["b"]  # type: ignore[type-var]
        with pytest.raises(DagDefinitionError, match="cannot make a dependency with 3: use tasks"):
            a >> 3  # type: ignore[type-var]


def test_dependency_across_dags() -> None:
    with DAG("one"):
        a = Shell("a", "true")
    with DAG("two"):
        b = Shell("b", "true")
    with pytest.raises(DagDefinitionError, match="task 'b' of DAG 'two' cannot depend on task 'a'"):
        a >> b


# ------------------------------------------------------------------------------ mapping


@task
def list_files() -> list[str]:
    return ["a.csv", "b.csv"]


@task
def process(path: str, mode: str = "fast", ctx: Context | None = None) -> str:
    assert ctx is not None
    return f"{path}:{mode}:{ctx.map_index}"


@task
def summarize(results: list[str]) -> int:
    return len(results)


def test_expand_over_a_result_and_a_literal() -> None:
    with DAG("d") as dag:
        mapped = process.expand(path=list_files())
        literal = process.partial(mode="slow").expand(path=["x", "y"])
        summarize(mapped)
    first, second = dag.get_task("process"), dag.get_task("process__1")
    assert isinstance(first, PythonTask) and isinstance(second, PythonTask)
    assert (first.args, first.expand) == ({}, {"path": {"__result__": "list_files"}})
    assert (second.args, second.expand) == ({"mode": "slow"}, {"path": ["x", "y"]})
    assert first.upstream_ids == {"list_files"}
    assert dag.get_task("summarize").upstream_ids == {"process"}
    assert mapped.task is first and literal.task is second


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: process.expand(), "expand\\(\\) needs at least one keyword argument"),
        (lambda: process.expand(path="a.csv"), "expand argument 'path' must be a list or a task"),
        (lambda: process.expand(nope=[1]), "expand\\(\\) got 'nope', not a named parameter"),
        (lambda: process.expand(ctx=[1]), "expand\\(\\) got 'ctx', not a named parameter"),
        (
            lambda: process.partial(path="a").expand(path=["b"]),
            "'path' is given to both partial\\(\\) and expand\\(\\)",
        ),
        (
            lambda: process.expand(path=["a", "b"], mode=["x"]),
            "expand\\(\\) lists have different lengths \\[1, 2\\]",
        ),
        (lambda: summarize.partial(other=1).expand(results=[[1]]), "unexpected keyword"),
    ],
)
def test_expand_errors(call: Any, message: str) -> None:
    with pytest.raises(DagDefinitionError, match=message), DAG("d"):
        call()


# ---------------------------------------------------------------------------- runtime call


def test_call_injects_ctx_and_resolves_upstream_results() -> None:
    @task
    def load(stats: dict[str, int], extra: list[int], context: Context) -> str:
        return f"{context.run_id}:{stats['rows']}:{extra}"

    @task
    def transform() -> dict[str, int]:
        return {}

    with DAG("d"):
        ref = load(transform(), [1, 2])
    assert isinstance(ref.task, PythonTask)
    result = ref.task.call(make_ctx(run_id="run1"), {"transform": {"rows": 7}}, -1)
    assert result == "run1:7:[1, 2]"


def test_call_of_a_mapped_task_picks_its_element() -> None:
    with DAG("d"):
        mapped = process.partial(mode="slow").expand(path=list_files())
    assert isinstance(mapped.task, PythonTask)
    results = {"list_files": ["a.csv", "b.csv"]}
    call = mapped.task.call
    assert call(make_ctx(map_index=1), results, 1) == "b.csv:slow:1"
    assert call(make_ctx(map_index=0), results, 0) == "a.csv:slow:0"
    with pytest.raises(IndexError, match="map index 2 is outside expand argument 'path'"):
        call(make_ctx(), results, 2)
    with pytest.raises(TypeError, match="expand argument 'path' must resolve to a list"):
        call(make_ctx(), {"list_files": "a.csv"}, 0)


def test_call_receives_the_list_of_mapped_results() -> None:
    with DAG("d"):
        total = summarize(process.expand(path=["a", "b"]))
    assert isinstance(total.task, PythonTask)
    assert total.task.call(make_ctx(), {"process": ["a:fast:0", "b:fast:1"]}, -1) == 2


def test_call_with_positional_only_and_varargs() -> None:
    @task
    def f(a: int, /, *rest: int, **named: int) -> tuple[Any, ...]:
        return a, rest, named

    with DAG("d"):
        ref = f(1, 2, 3, x=4)
    assert isinstance(ref.task, PythonTask)
    assert ref.task.call(make_ctx(), {}, -1) == (1, (2, 3), {"x": 4})


def test_call_of_a_function_without_ctx() -> None:
    @task
    def f(x: int) -> int:
        return x + 1

    with DAG("d"):
        ref = f(41)
    assert isinstance(ref.task, PythonTask)
    assert ref.task.call(make_ctx(), {}, -1) == 42


# ------------------------------------------------------------------------------ shell


def test_shell_render() -> None:
    with DAG("d", params={"out": "/tmp/out"}):
        shell = Shell(
            "extract",
            "etl --day {{ ds }} --out {{ params.out }}",
            env={"DAY": "{{ ds_nodash }}", "STATIC": "1"},
            cwd="srv/{{ dag_id }}",
        )
    assert isinstance(shell, ShellTask)
    ctx = make_ctx(params={"out": "/data"})
    assert shell.render(ctx) == (
        ShellCommand(
            'etl --day "${__drayman_values[0]}" --out "${__drayman_values[1]}"',
            ("2026-01-02", "/data"),
        ),
        {"DAY": "20260102", "STATIC": "1"},
        "srv/d",
    )
    with DAG("e"):
        assert Shell("s", "true").render(ctx) == (ShellCommand("true"), {}, None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"command": ""}, "command must be a non-empty string"),
        ({"command": "echo {{ ds"}, "template in command: line 1"),
        ({"env": {"A": "{% if %}"}}, "template in env\\['A'\\]: line 1"),
        ({"env": {"A": 1}}, "env\\['A'\\] must be a non-empty string"),
        ({"env": {"A=B": "x"}}, "invalid environment variable name 'A=B'"),
        ({"cwd": 3}, "cwd must be a non-empty string"),
        ({"retries": "3"}, "retries must be an integer >= 0"),
        ({"pool_slot": 2}, "unknown keyword 'pool_slot' \\(did you mean 'pool_slots'\\?\\)"),
    ],
)
def test_shell_errors(kwargs: dict[str, Any], message: str) -> None:
    arguments = {"command": "true", **kwargs}
    with pytest.raises(DagDefinitionError, match=r"\.py:\d+: task 's': " + message), DAG("d"):
        Shell("s", **arguments)


# -------------------------------------------------------------------------- task callbacks


def test_task_callbacks_with_one_and_two_parameters() -> None:
    calls: list[tuple[object, ...]] = []

    def one(ctx: Context) -> None:
        calls.append(("one", ctx.task_id))

    def two(ctx: Context, error: str | None) -> None:
        calls.append(("two", ctx.task_id, error))

    with DAG("d", default_args={"on_retry": two}):
        shell = Shell("s", "false", on_failure=[one, two])
    shell.run_callback("on_failure", make_ctx(task_id="s"), "exit code 1")
    shell.run_callback("on_retry", make_ctx(task_id="s"), "exit code 2")
    shell.run_callback("on_success", make_ctx(task_id="s"), None)  # none set: nothing happens
    assert calls == [("one", "s"), ("two", "s", "exit code 1"), ("two", "s", "exit code 2")]
    with pytest.raises(ValueError, match="unknown task callback 'on_done'"):
        shell.run_callback("on_done", make_ctx(), None)


def test_callback_with_optional_second_parameter_gets_it() -> None:
    got: list[object] = []
    with DAG("d"):
        shell = Shell("s", "true", on_success=lambda ctx, error="unset": got.append(error))
    shell.run_callback("on_success", make_ctx(), None)
    assert got == [None]
