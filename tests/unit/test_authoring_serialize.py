"""Serialization: a DAG object as the DagSpec the scheduler reads, and the cycle check."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drayman import DAG, Param, Shell, task
from drayman.authoring.context import Context
from drayman.authoring.dag import collect_dags, reset_registry
from drayman.authoring.serialize import find_cycle, serialize_dag
from drayman.exceptions import DagDefinitionError
from drayman.spec import DagSpec, ParamSpec, TaskSpec


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    reset_registry()
    yield
    reset_registry()


def notify(ctx: Context, reason: str | None) -> None: ...


def build_example() -> DAG:
    """The example of the authoring guide, as a user writes it."""
    with DAG(
        "sales_daily",
        schedule="0 3 * * *",
        timezone="America/Los_Angeles",
        start_date="2026-01-01",
        catchup=False,
        retries=3,
        retry_delay=timedelta(seconds=30),
        retry_backoff=True,
        params={"out": "/tmp/out", "limit": Param(10, type="integer", description="max rows")},
        tags=["sales"],
        on_failure=notify,
    ) as dag:
        extract = Shell(
            "extract",
            "python -m etl.extract --day {{ ds }} --out {{ params.out }}",
            env={"X": "{{ ds }}"},
            cwd=None,
        )

        @task(retries=5, execution_timeout=timedelta(minutes=10))
        def transform(ctx: Context) -> dict[str, int]:
            return {"rows": 1234}

        @task
        def load(stats: dict[str, int]) -> None:
            """Load the rows."""

        extract >> load(transform())
    return dag


def test_example_serializes_to_the_expected_spec() -> None:
    build_example()
    (dag,) = collect_dags()
    shared = {"retry_delay_s": 30.0, "retry_backoff": True}
    assert dag.to_spec("dags/sales.py") == DagSpec(
        dag_id="sales_daily",
        fileloc="dags/sales.py",
        schedule="0 3 * * *",
        timezone="America/Los_Angeles",
        start_date="2026-01-01T00:00:00-08:00",
        catchup=False,
        params={
            "out": ParamSpec(default="/tmp/out"),
            "limit": ParamSpec(default=10, type="integer", description="max rows"),
        },
        tags=("sales",),
        callbacks=("on_failure",),
        tasks={
            "extract": TaskSpec(
                task_id="extract",
                kind="shell",
                retries=3,
                command="python -m etl.extract --day {{ ds }} --out {{ params.out }}",
                env={"X": "{{ ds }}"},
                **shared,  # type: ignore[arg-type]
            ),
            "transform": TaskSpec(
                task_id="transform",
                kind="python",
                retries=5,
                execution_timeout_s=600.0,
                **shared,  # type: ignore[arg-type]
            ),
            "load": TaskSpec(
                task_id="load",
                kind="python",
                upstream=("extract", "transform"),
                retries=3,
                args={"stats": {"__result__": "transform"}},
                doc="Load the rows.",
                **shared,  # type: ignore[arg-type]
            ),
        },
    )


def test_round_trip() -> None:
    spec = serialize_dag(build_example(), "dags/sales.py")
    assert DagSpec.from_json(spec.to_json()) == spec


def test_round_trip_of_every_option() -> None:
    @task
    def listing() -> list[str]:
        return []

    @task(
        queue="etl",
        pool="db",
        pool_slots=2,
        priority=7,
        trigger_rule="all_done",
        max_retry_delay=timedelta(hours=1),
        on_success=print,
        on_retry=[print],
    )
    def each(path: str, mode: str) -> None: ...

    with DAG(
        "every",
        schedule=timedelta(hours=2),
        start_date="2026-03-01T12:00:00",
        end_date="2027-01-01",
        catchup=True,
        max_active_runs=2,
        max_active_tasks=4,
        params={"items": Param([1, 2], type="array", required=True)},
        description="all of it",
        on_success=notify,
    ) as dag:
        each.partial(mode="x").expand(path=listing())
    spec = dag.to_spec("every.py")
    assert spec.schedule == "interval:7200"
    assert spec.start_date == "2026-03-01T12:00:00+00:00"
    assert spec.callbacks == ("on_success",)
    mapped = spec.tasks["each"]
    assert mapped.is_mapped
    assert mapped.expand == {"path": {"__result__": "listing"}}
    assert mapped.callbacks == ("on_success", "on_retry")
    assert (mapped.pool, mapped.pool_slots, mapped.max_retry_delay_s) == ("db", 2, 3600.0)
    assert DagSpec.from_json(spec.to_json()) == spec


def test_spec_is_a_copy() -> None:
    spec = serialize_dag(build_example(), "x.py")
    spec.tasks["load"].args["stats"] = 1
    assert serialize_dag(collect_dags()[0], "x.py").tasks["load"].args["stats"] != 1


def test_cycle_is_named() -> None:
    with DAG("d") as dag:
        a, b, c = (Shell(name, "true") for name in "abc")
        a >> b >> c >> a
    with pytest.raises(DagDefinitionError, match=r"\.py:\d+: DAG 'd': cycle: a -> b -> c -> a$"):
        dag.to_spec("d.py")


def test_self_dependency_is_a_cycle() -> None:
    with DAG("d") as dag:
        a = Shell("a", "true")
        a >> a
    with pytest.raises(DagDefinitionError, match=r"cycle: a -> a$"):
        dag.to_spec("d.py")


def test_find_cycle_examples() -> None:
    assert find_cycle({}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) is None
    assert find_cycle({"x": {"y"}, "y": {"z"}, "z": {"y"}}) == ["y", "z", "y"]


def test_find_cycle_on_a_long_chain_does_not_recurse() -> None:
    chain = {str(i): {str(i + 1)} for i in range(20_000)}
    chain["20000"] = set()
    assert find_cycle(chain) is None
    chain["20000"] = {"0"}
    cycle = find_cycle(chain)
    assert cycle is not None and len(cycle) == 20_002


@st.composite
def ordered_graphs(draw: st.DrawFn) -> dict[str, set[str]]:
    """Random DAGs: every edge goes from a lower to a higher node number."""
    size = draw(st.integers(min_value=1, max_value=12))
    nodes = [f"t{i}" for i in range(size)]
    graph: dict[str, set[str]] = {node: set() for node in nodes}
    for low in range(size):
        for high in range(low + 1, size):
            if draw(st.booleans()):
                graph[nodes[low]].add(nodes[high])
    return graph


@given(graph=ordered_graphs(), data=st.data())
def test_find_cycle_finds_exactly_the_back_edges(
    graph: dict[str, set[str]], data: st.DataObject
) -> None:
    assert find_cycle(graph) is None
    nodes = sorted(graph, key=lambda node: int(node[1:]))
    high = data.draw(st.integers(min_value=0, max_value=len(nodes) - 1))
    low = data.draw(st.integers(min_value=0, max_value=high))
    graph[nodes[high]].add(nodes[low])  # a back edge: a cycle exactly when low reaches high
    cycle = find_cycle(graph)
    if _reaches(graph, nodes[low], nodes[high]):
        assert cycle is not None
        assert cycle[0] == cycle[-1]
        assert all(after in graph[before] for before, after in itertools.pairwise(cycle))
    else:
        assert cycle is None


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo.extend(graph[node])
    return False
