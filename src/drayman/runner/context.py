"""The `Context` a task or a callback is handed: run data from its workload, dates aware."""

from __future__ import annotations

from drayman.authoring.context import Context, parse_aware
from drayman.workloads import RunContextData, TryWorkload


def context_for(workload: TryWorkload) -> Context:
    """The Context of one try: run data from the workload, times aware in the DAG's zone."""
    return run_context(
        workload.run, workload.task_id, workload.map_index, workload.try_number, workload.max_tries
    )


def run_context(
    run: RunContextData, task_id: str, map_index: int, try_number: int, max_tries: int
) -> Context:
    return Context(
        dag_id=run.dag_id,
        run_id=run.run_id,
        task_id=task_id,
        map_index=map_index,
        try_number=try_number,
        max_tries=max_tries,
        run_type=run.run_type,
        logical_date=parse_aware(run.logical_date, run.timezone),
        data_interval_start=parse_aware(run.data_interval_start, run.timezone),
        data_interval_end=parse_aware(run.data_interval_end, run.timezone),
        timezone=run.timezone,
        bundle_version=run.bundle_version,
        params=dict(run.params),
        conf=dict(run.conf),
    )
