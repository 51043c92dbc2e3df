"""A DAG object as a `DagSpec`: the plain data the scheduler and the web server read.

This is also where a DAG's graph is checked for cycles, since a cycle can only be seen once
every dependency of the file has been declared.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from drayman.exceptions import DagDefinitionError
from drayman.spec import DagSpec, TaskSpec

if TYPE_CHECKING:
    from drayman.authoring.dag import DAG
    from drayman.authoring.tasks import Task


def serialize_dag(dag: DAG, fileloc: str) -> DagSpec:
    """`dag` as a `DagSpec`; DagDefinitionError naming the path if its tasks form a cycle.

    `fileloc` is the DAG file's path relative to the bundle root.
    """
    from drayman.timetables import schedule_to_string

    check_acyclic(dag)
    return DagSpec(
        dag_id=dag.dag_id,
        fileloc=fileloc,
        schedule=schedule_to_string(dag.schedule),
        timezone=dag.timezone,
        start_date=_iso(dag.start_date),
        end_date=_iso(dag.end_date),
        catchup=dag.catchup,
        max_active_runs=dag.max_active_runs,
        max_active_tasks=dag.max_active_tasks,
        params=dict(dag.params),
        tags=dag.tags,
        description=dag.description,
        callbacks=_set_callbacks({"on_success": dag.on_success, "on_failure": dag.on_failure}),
        tasks={task_id: _task_spec(task) for task_id, task in dag.tasks.items()},
    )


def check_acyclic(dag: DAG) -> None:
    """DagDefinitionError "cycle: a -> b -> a" if the DAG's dependencies loop."""
    cycle = find_cycle({task_id: task.downstream_ids for task_id, task in dag.tasks.items()})
    if cycle:
        raise DagDefinitionError(f"{dag.where}: DAG {dag.dag_id!r}: cycle: {' -> '.join(cycle)}")


def find_cycle(downstream: Mapping[str, Collection[str]]) -> list[str] | None:
    """A cycle as the path that closes it (["a", "b", "a"]), or None if the graph has none.

    Depth-first with an explicit stack, so a chain of ten thousand tasks cannot hit the
    recursion limit; nodes are visited in sorted order so the same graph names the same cycle.
    """
    done: set[str] = set()
    for root in sorted(downstream):
        if root in done:
            continue
        path = [root]
        on_path = {root}
        pending = [iter(sorted(downstream[root]))]
        while pending:
            child = next(pending[-1], None)
            if child is None:
                node = path.pop()
                on_path.discard(node)
                done.add(node)
                pending.pop()
            elif child in on_path:
                return [*path[path.index(child) :], child]
            elif child not in done:
                path.append(child)
                on_path.add(child)
                pending.append(iter(sorted(downstream.get(child, ()))))
    return None


def _task_spec(task: Task) -> TaskSpec:
    options = task.options
    callbacks = {
        "on_success": options.on_success,
        "on_failure": options.on_failure,
        "on_retry": options.on_retry,
    }
    return TaskSpec(
        task_id=task.task_id,
        kind=task.kind,
        upstream=tuple(sorted(task.upstream_ids)),
        trigger_rule=options.trigger_rule,
        retries=options.retries,
        retry_delay_s=options.retry_delay_s,
        retry_backoff=options.retry_backoff,
        max_retry_delay_s=options.max_retry_delay_s,
        execution_timeout_s=options.execution_timeout_s,
        queue=options.queue,
        pool=options.pool,
        pool_slots=options.pool_slots,
        priority=options.priority,
        callbacks=_set_callbacks(callbacks),
        doc=task.doc,
        **task.spec_fields(),
    )


def _set_callbacks(callbacks: Mapping[str, Collection[object]]) -> tuple[str, ...]:
    """The names of the callbacks that are set; only names are stored, never code."""
    return tuple(name for name, functions in callbacks.items() if functions)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
