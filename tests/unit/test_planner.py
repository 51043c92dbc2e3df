from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from drayman.scheduler.planner import (
    Candidate,
    DagShape,
    Limits,
    RunView,
    TIView,
    plan_queue,
    plan_runs,
    topological_order,
)
from drayman.spec import DagSpec, TaskSpec, result_ref
from drayman.states import RunState, StateChange, TIState

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

P = TIState.PENDING
SCH = TIState.SCHEDULED
R = TIState.RUNNING
S = TIState.SUCCESS
F = TIState.FAILED
RETRY = TIState.UP_FOR_RETRY
UF = TIState.UPSTREAM_FAILED
K = TIState.SKIPPED
X = TIState.REMOVED


def task(task_id: str, *upstream: str, rule: str = "all_success", expand: Any = None) -> TaskSpec:
    return TaskSpec(
        task_id=task_id, kind="python", upstream=upstream, trigger_rule=rule, expand=expand
    )


def dag(*tasks: TaskSpec, dag_id: str = "etl") -> DagSpec:
    return DagSpec(dag_id=dag_id, fileloc=f"{dag_id}.py", tasks={t.task_id: t for t in tasks})


def run_of(
    spec: DagSpec,
    states: dict[str, TIState | list[TIState]],
    *,
    run_id: int = 1,
    retry_at: dict[str, datetime] | None = None,
) -> RunView:
    """A run with one TI per task (ids 1, 2, ... in `states` order).

    A list of states gives a mapped task: its placeholder (REMOVED) and one TI per element.
    """
    tis: list[TIView] = []
    for task_id, state in states.items():
        if isinstance(state, list):
            tis.append(TIView(len(tis) + 1, task_id, -1, X))
            for index, mapped in enumerate(state):
                tis.append(TIView(len(tis) + 1, task_id, index, mapped))
        else:
            at = (retry_at or {}).get(task_id)
            tis.append(TIView(len(tis) + 1, task_id, -1, state, at))
    return RunView(run_id, spec.dag_id, DagShape.of(spec), tis)


def new_states(run: RunView, changes: list[StateChange]) -> dict[str, TIState]:
    """task_id -> new state, for the changes of one run with unmapped tasks."""
    by_id = {ti.id: ti for ti in run.tis}
    result = {}
    for change in changes:
        assert change.old == by_id[change.ti_id].state, change
        result[by_id[change.ti_id].task_id] = change.new
    return result


CHAIN = dag(task("extract"), task("transform", "extract"), task("load", "transform"))


# -- topological order -----------------------------------------------------------------------


def test_topological_order_puts_every_task_after_its_upstream() -> None:
    spec = dag(task("load", "transform"), task("transform", "extract"), task("extract"))

    assert topological_order(spec) == ("extract", "transform", "load")


def test_topological_order_breaks_ties_in_definition_order() -> None:
    spec = dag(task("zeta"), task("alpha"), task("mid"))

    assert topological_order(spec) == ("zeta", "alpha", "mid")


def test_topological_order_of_a_diamond() -> None:
    spec = dag(
        task("end", "right", "left"),
        task("right", "start"),
        task("left", "start"),
        task("start"),
    )

    assert topological_order(spec) == ("start", "right", "left", "end")


def test_topological_order_refuses_a_cycle_and_names_its_tasks() -> None:
    spec = dag(task("a", "c"), task("b", "a"), task("c", "b"), task("free"))

    with pytest.raises(ValueError, match=r"DAG 'etl' has a cycle among \['a', 'b', 'c'\]"):
        topological_order(spec)


def test_topological_order_names_an_unknown_upstream_task_instead_of_a_cycle() -> None:
    spec = dag(task("a"), task("b", "ghost"))

    with pytest.raises(ValueError, match="task 'b' of DAG 'etl' has unknown upstream 'ghost'"):
        topological_order(spec)


def test_dag_shape_of_a_dag_with_an_unknown_upstream_names_it() -> None:
    with pytest.raises(ValueError, match="unknown upstream 'ghost'"):
        DagShape.of(dag(task("b", "ghost")))


def test_dag_shape_knows_leaves_and_expand_sources() -> None:
    spec = dag(
        task("numbers"),
        task("letters"),
        task("pair", "numbers", "letters", expand={"n": result_ref("numbers"), "c": [1, 2]}),
        task("report", "pair"),
        task("audit", "letters"),
    )

    shape = DagShape.of(spec)

    assert shape.order == ("numbers", "letters", "pair", "audit", "report")
    assert shape.leaves == {"report", "audit"}
    assert shape.expand_sources == {"pair": frozenset({"numbers"})}


# -- plan_runs ----------------------------------------------------------------------------------


def test_a_new_chain_schedules_only_its_first_task() -> None:
    run = run_of(CHAIN, {"extract": P, "transform": P, "load": P})

    plan = plan_runs([run], NOW)

    assert plan.changes == [StateChange(1, P, SCH)]
    assert plan.expansions == []
    assert plan.finished == []


def test_a_chain_advances_one_step_when_a_task_succeeds() -> None:
    run = run_of(CHAIN, {"extract": S, "transform": P, "load": P})

    plan = plan_runs([run], NOW)

    assert new_states(run, plan.changes) == {"transform": SCH}
    assert plan.finished == []


def test_a_running_task_blocks_its_downstream() -> None:
    run = run_of(CHAIN, {"extract": R, "transform": P, "load": P})

    plan = plan_runs([run], NOW)

    assert plan.changes == []
    assert plan.finished == []


def test_a_failure_propagates_upstream_failed_down_the_whole_chain_in_one_call() -> None:
    spec = dag(task("a"), task("b", "a"), task("c", "b"), task("d", "c"), task("e", "d"))
    run = run_of(spec, {"a": F, "b": P, "c": P, "d": P, "e": P})

    plan = plan_runs([run], NOW)

    assert new_states(run, plan.changes) == {"b": UF, "c": UF, "d": UF, "e": UF}
    assert plan.finished == [(1, RunState.FAILED)]


def test_a_skip_propagates_down_the_chain_and_the_run_succeeds() -> None:
    run = run_of(CHAIN, {"extract": K, "transform": P, "load": P})

    plan = plan_runs([run], NOW)

    assert new_states(run, plan.changes) == {"transform": K, "load": K}
    assert plan.finished == [(1, RunState.SUCCESS)]


def test_propagation_follows_trigger_rules_along_the_way() -> None:
    spec = dag(
        task("a"),
        task("b", "a"),
        task("cleanup", "b", rule="all_done"),
        task("alert", "a", rule="one_failed"),
        task("after_alert", "alert"),
    )
    run = run_of(spec, {"a": F, "b": P, "cleanup": P, "alert": P, "after_alert": P})

    plan = plan_runs([run], NOW)

    assert new_states(run, plan.changes) == {"b": UF, "cleanup": SCH, "alert": SCH}
    assert plan.finished == []


@pytest.mark.parametrize(
    ("retry_at", "expected"),
    [
        pytest.param(NOW + timedelta(seconds=1), None, id="not yet due"),
        pytest.param(NOW, SCH, id="due exactly now"),
        pytest.param(NOW - timedelta(minutes=5), SCH, id="overdue"),
    ],
)
def test_up_for_retry_is_scheduled_only_once_its_retry_is_due(
    retry_at: datetime, expected: TIState | None
) -> None:
    run = run_of(
        CHAIN, {"extract": RETRY, "transform": P, "load": P}, retry_at={"extract": retry_at}
    )

    plan = plan_runs([run], NOW)

    assert new_states(run, plan.changes) == ({"extract": expected} if expected else {})
    assert plan.finished == []


def test_a_waiting_retry_keeps_the_run_unfinished_and_its_downstream_pending() -> None:
    spec = dag(task("a"), task("b", "a", rule="all_done"))
    run = run_of(spec, {"a": RETRY, "b": P}, retry_at={"a": NOW + timedelta(hours=1)})

    plan = plan_runs([run], NOW)

    assert plan.changes == []
    assert plan.finished == []


MAPPED = dag(
    task("numbers"),
    task("square", "numbers", expand={"n": result_ref("numbers")}),
    task("total", "square"),
)


def test_a_ready_mapped_placeholder_is_expanded_not_scheduled() -> None:
    run = run_of(MAPPED, {"numbers": S, "square": P, "total": P}, run_id=7)

    plan = plan_runs([run], NOW)

    assert plan.expansions == [(7, TIView(2, "square", -1, P))]
    assert plan.changes == []
    assert plan.finished == []  # not finished while expanding


def test_a_mapped_placeholder_whose_upstream_failed_is_not_expanded() -> None:
    run = run_of(MAPPED, {"numbers": F, "square": P, "total": P})

    plan = plan_runs([run], NOW)

    assert plan.expansions == []
    assert new_states(run, plan.changes) == {"square": UF, "total": UF}
    assert plan.finished == [(1, RunState.FAILED)]


def test_downstream_of_a_mapped_task_waits_for_every_mapped_instance() -> None:
    run = run_of(MAPPED, {"numbers": S, "square": [S, R, S], "total": P})

    plan = plan_runs([run], NOW)

    assert plan.changes == []
    assert plan.finished == []


def test_downstream_of_a_mapped_task_runs_once_every_mapped_instance_succeeded() -> None:
    run = run_of(MAPPED, {"numbers": S, "square": [S, S, S], "total": P})

    plan = plan_runs([run], NOW)

    assert plan.changes == [StateChange(6, P, SCH)]
    assert plan.expansions == []


def test_one_failed_mapped_instance_fails_the_downstream() -> None:
    run = run_of(MAPPED, {"numbers": S, "square": [S, F], "total": P})

    plan = plan_runs([run], NOW)

    assert plan.changes == [StateChange(5, P, UF)]
    assert plan.finished == [(1, RunState.FAILED)]


def test_a_run_succeeds_when_all_finished_and_every_leaf_is_ok() -> None:
    spec = dag(task("a"), task("b", "a"), task("c", "a"))
    run = run_of(spec, {"a": S, "b": S, "c": K})

    plan = plan_runs([run], NOW)

    assert plan.changes == []
    assert plan.finished == [(1, RunState.SUCCESS)]


@pytest.mark.parametrize("leaf_state", [F, UF], ids=str)
def test_a_run_fails_when_a_leaf_failed(leaf_state: TIState) -> None:
    spec = dag(task("a"), task("b", "a"), task("c", "a"))
    run = run_of(spec, {"a": S, "b": S, "c": leaf_state})

    plan = plan_runs([run], NOW)

    assert plan.finished == [(1, RunState.FAILED)]


def test_a_run_succeeds_when_an_intermediate_task_failed_but_an_all_done_leaf_succeeded() -> None:
    spec = dag(task("work"), task("cleanup", "work", rule="all_done"))
    run = run_of(spec, {"work": F, "cleanup": S})

    plan = plan_runs([run], NOW)

    assert plan.finished == [(1, RunState.SUCCESS)]


def test_a_mapped_leaf_with_a_failed_instance_fails_the_run() -> None:
    spec = dag(task("numbers"), task("square", "numbers", expand={"n": result_ref("numbers")}))
    run = run_of(spec, {"numbers": S, "square": [S, F, S]})

    plan = plan_runs([run], NOW)

    assert plan.finished == [(1, RunState.FAILED)]


def test_a_run_is_not_finished_while_a_task_runs() -> None:
    spec = dag(task("a"), task("b"))
    run = run_of(spec, {"a": F, "b": R})

    assert plan_runs([run], NOW).finished == []


def test_runs_are_planned_independently() -> None:
    first = run_of(CHAIN, {"extract": S, "transform": S, "load": S}, run_id=1)
    second = run_of(CHAIN, {"extract": P, "transform": P, "load": P}, run_id=2)
    second = RunView(
        2,
        second.dag_id,
        second.shape,
        [TIView(ti.id + 10, ti.task_id, ti.map_index, ti.state) for ti in second.tis],
    )

    plan = plan_runs([first, second], NOW)

    assert plan.changes == [StateChange(11, P, SCH)]
    assert plan.finished == [(1, RunState.SUCCESS)]


# -- plan_queue ---------------------------------------------------------------------------------


def limits(
    open_slots: int = 100,
    pool_sizes: dict[str, int] | None = None,
    pool_used: dict[str, int] | None = None,
    dag_limits: dict[str, int] | None = None,
    dag_active: dict[str, int] | None = None,
) -> Limits:
    return Limits(
        open_slots=open_slots,
        pool_sizes={"default_pool": 128} if pool_sizes is None else pool_sizes,
        pool_used=pool_used or {},
        dag_limits={"etl": 16, "web": 16} if dag_limits is None else dag_limits,
        dag_active=dag_active or {},
    )


def cand(ti_id: int, dag_id: str = "etl", pool: str = "default_pool", slots: int = 1) -> Candidate:
    return Candidate(ti_id, dag_id, pool, slots)


def test_plan_queue_keeps_the_candidates_order() -> None:
    candidates = [cand(5), cand(3), cand(9), cand(1)]

    assert plan_queue(candidates, limits()) == [5, 3, 9, 1]


@pytest.mark.parametrize(("open_slots", "expected"), [(0, []), (2, [1, 2]), (10, [1, 2, 3])])
def test_plan_queue_takes_no_more_than_the_executors_open_slots(
    open_slots: int, expected: list[int]
) -> None:
    candidates = [cand(1), cand(2), cand(3)]

    assert plan_queue(candidates, limits(open_slots=open_slots)) == expected


def test_plan_queue_honours_pool_sizes_and_current_use() -> None:
    candidates = [cand(1, pool="warehouse"), cand(2, pool="warehouse"), cand(3)]

    chosen = plan_queue(
        candidates,
        limits(pool_sizes={"warehouse": 2, "default_pool": 8}, pool_used={"warehouse": 1}),
    )

    assert chosen == [1, 3]


def test_plan_queue_counts_pool_slots_and_lets_a_smaller_task_fit_behind_a_big_one() -> None:
    candidates = [
        cand(1, pool="gpu", slots=2),
        cand(2, pool="gpu", slots=2),
        cand(3, pool="gpu", slots=1),
        cand(4, pool="gpu", slots=1),
    ]

    assert plan_queue(candidates, limits(pool_sizes={"gpu": 3})) == [1, 3]


def test_plan_queue_never_queues_a_task_bigger_than_its_pool() -> None:
    assert plan_queue([cand(1, pool="gpu", slots=5)], limits(pool_sizes={"gpu": 4})) == []


def test_plan_queue_never_queues_a_task_of_an_unknown_pool() -> None:
    candidates = [cand(1, pool="nope"), cand(2)]

    assert plan_queue(candidates, limits()) == [2]


def test_plan_queue_honours_max_active_tasks_per_dag() -> None:
    candidates = [cand(1), cand(2), cand(3), cand(4, dag_id="web")]

    chosen = plan_queue(candidates, limits(dag_limits={"etl": 2, "web": 1}, dag_active={"etl": 1}))

    assert chosen == [1, 4]


def test_plan_queue_skips_a_dag_already_at_its_limit() -> None:
    candidates = [cand(1), cand(2, dag_id="web")]

    chosen = plan_queue(candidates, limits(dag_limits={"etl": 3, "web": 3}, dag_active={"etl": 3}))

    assert chosen == [2]


def test_plan_queue_does_not_change_the_limits_it_is_given() -> None:
    given = limits(pool_used={"default_pool": 1}, dag_active={"etl": 1})

    plan_queue([cand(1), cand(2)], given)

    assert given.pool_used == {"default_pool": 1}
    assert given.dag_active == {"etl": 1}
