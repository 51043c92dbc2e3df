"""What the scheduler should do next, decided from data alone. Pure: no I/O, no clock.

`plan_runs` walks each active run in topological order, so a failure propagates through a
whole chain (upstream_failed, skipped) in one tick, and tells which task instances became
ready, which mapped tasks can expand, and which runs are finished. `plan_queue` picks which
ready task instances may start now, honouring executor slots, pools and max_active_tasks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from drayman.spec import DagSpec, referenced_tasks
from drayman.states import TI_FINISHED, RunState, StateChange, TIState
from drayman.trigger_rules import Verdict, evaluate


@dataclass(frozen=True)
class DagShape:
    """What the planner needs of a DagSpec, computed once per (dag, bundle version)."""

    spec: DagSpec
    order: tuple[str, ...]  # topological
    leaves: frozenset[str]
    expand_sources: Mapping[str, frozenset[str]]  # mapped task -> tasks its inputs come from

    @classmethod
    def of(cls, spec: DagSpec) -> DagShape:
        order = topological_order(spec)  # first: it names an unknown upstream task
        downstream = spec.downstream()
        return cls(
            spec=spec,
            order=order,
            leaves=frozenset(t for t, down in downstream.items() if not down),
            expand_sources={
                t.task_id: frozenset(referenced_tasks(t.expand))
                for t in spec.tasks.values()
                if t.expand is not None
            },
        )


@dataclass(frozen=True)
class TIView:
    id: int
    task_id: str
    map_index: int
    state: TIState
    next_retry_at: datetime | None = None


@dataclass(frozen=True)
class RunView:
    id: int
    dag_id: str
    shape: DagShape
    tis: Sequence[TIView]


@dataclass
class RunPlan:
    changes: list[StateChange] = field(default_factory=list)
    expansions: list[tuple[int, TIView]] = field(default_factory=list)  # (run id, placeholder)
    finished: list[tuple[int, RunState]] = field(default_factory=list)


def topological_order(spec: DagSpec) -> tuple[str, ...]:
    """Task ids, every task after all of its upstream tasks (ties in definition order)."""
    for task in spec.tasks.values():
        for up in task.upstream:
            if up not in spec.tasks:
                raise ValueError(
                    f"task {task.task_id!r} of DAG {spec.dag_id!r} has unknown upstream {up!r}"
                )
    remaining = {task_id: set(task.upstream) for task_id, task in spec.tasks.items()}
    order: list[str] = []
    while remaining:
        ready = [task_id for task_id, ups in remaining.items() if not ups]
        if not ready:
            raise ValueError(f"DAG {spec.dag_id!r} has a cycle among {sorted(remaining)}")
        for task_id in ready:
            order.append(task_id)
            del remaining[task_id]
        for ups in remaining.values():
            ups.difference_update(ready)
    return tuple(order)


def plan_runs(runs: Sequence[RunView], now: datetime) -> RunPlan:
    """State changes, expansions and finished runs for these active runs."""
    plan = RunPlan()
    for run in runs:
        _plan_run(run, now, plan)
    return plan


def _plan_run(run: RunView, now: datetime, plan: RunPlan) -> None:
    by_task: dict[str, list[TIView]] = defaultdict(list)
    for ti in run.tis:
        by_task[ti.task_id].append(ti)
    states: dict[int, TIState] = {ti.id: ti.state for ti in run.tis}
    expanding: set[str] = set()
    for task_id in run.shape.order:
        task = run.shape.spec.tasks[task_id]
        for ti in by_task.get(task_id, []):
            new = _next_state(run, ti, states, by_task, now)
            if new is None:
                continue
            if new == TIState.SCHEDULED and ti.map_index < 0 and task.is_mapped:
                plan.expansions.append((run.id, ti))
                expanding.add(task_id)
                continue
            plan.changes.append(StateChange(ti.id, ti.state, new))
            states[ti.id] = new
    if not expanding:
        finished = _run_outcome(run, states, by_task)
        if finished is not None:
            plan.finished.append((run.id, finished))


def _next_state(
    run: RunView,
    ti: TIView,
    states: Mapping[int, TIState],
    by_task: Mapping[str, Sequence[TIView]],
    now: datetime,
) -> TIState | None:
    if ti.state == TIState.UP_FOR_RETRY:
        due = ti.next_retry_at is None or ti.next_retry_at <= now
        return TIState.SCHEDULED if due else None
    if ti.state != TIState.PENDING:
        return None
    task = run.shape.spec.tasks[ti.task_id]
    upstream = [states[up.id] for name in task.upstream for up in by_task.get(name, [])]
    verdict = evaluate(task.trigger_rule, upstream)
    if verdict is Verdict.READY:
        return TIState.SCHEDULED
    if verdict is Verdict.UPSTREAM_FAILED:
        return TIState.UPSTREAM_FAILED
    if verdict is Verdict.SKIPPED:
        return TIState.SKIPPED
    return None


def _run_outcome(
    run: RunView, states: Mapping[int, TIState], by_task: Mapping[str, Sequence[TIView]]
) -> RunState | None:
    if not all(state in TI_FINISHED for state in states.values()):
        return None
    for leaf in run.shape.leaves:
        for ti in by_task.get(leaf, []):
            if states[ti.id] in (TIState.FAILED, TIState.UPSTREAM_FAILED):
                return RunState.FAILED
    return RunState.SUCCESS


@dataclass(frozen=True)
class Candidate:
    """A SCHEDULED task instance that wants to start."""

    ti_id: int
    dag_id: str
    pool: str
    pool_slots: int


@dataclass(frozen=True)
class Limits:
    open_slots: int  # what the executor takes now
    pool_sizes: Mapping[str, int]
    pool_used: Mapping[str, int]
    dag_limits: Mapping[str, int]  # max_active_tasks per DAG
    dag_active: Mapping[str, int]


def plan_queue(candidates: Sequence[Candidate], limits: Limits) -> list[int]:
    """Ids of the candidates (already in priority order) that may start now."""
    chosen: list[int] = []
    pool_used = dict(limits.pool_used)
    dag_active = dict(limits.dag_active)
    for cand in candidates:
        if len(chosen) >= limits.open_slots:
            break
        pool_free = limits.pool_sizes.get(cand.pool, 0) - pool_used.get(cand.pool, 0)
        if cand.pool_slots > pool_free:
            continue
        dag_limit = limits.dag_limits.get(cand.dag_id, 0)
        if dag_active.get(cand.dag_id, 0) >= dag_limit:
            continue
        chosen.append(cand.ti_id)
        pool_used[cand.pool] = pool_used.get(cand.pool, 0) + cand.pool_slots
        dag_active[cand.dag_id] = dag_active.get(cand.dag_id, 0) + 1
    return chosen
