"""Advancing runs: the planner's decisions for the running runs applied to the store, mapped
tasks expanded, finished runs finished, and the DAG callback of each finished run built.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from drayman.scheduler import planner
from drayman.scheduler.caches import RunCache, SpecCache
from drayman.spec import resolve_refs
from drayman.states import RunState, StateChange, TIState
from drayman.store import dispatch
from drayman.store import runs as run_store
from drayman.store import task_instances as ti_store
from drayman.store.engine import Connection
from drayman.workloads import Workload, dispatch_error

log = logging.getLogger("drayman.scheduler")


@dataclass
class Advanced:
    """What advancing did: the runs it finished (their rows), their DAG callbacks to send,
    and the runs to plan again (an expansion added task instances)."""

    finished: list[tuple[Any, RunState]] = field(default_factory=list)
    callbacks: list[Workload] = field(default_factory=list)
    dirty: set[int] = field(default_factory=set)


class Advancing:
    """Plans running runs and applies the plans."""

    def __init__(self, specs: SpecCache, runs: RunCache) -> None:
        self.specs = specs
        self.runs = runs

    def advance(self, conn: Connection, runs: Sequence[Any], now: datetime) -> Advanced:
        """Plan `runs` (dag_run rows) at `now` and apply the plan, until no expansion is left
        (at most three rounds: an expansion adds task instances that may progress at once)."""
        advanced = Advanced()
        for _ in range(3):
            plan = self._plan(conn, runs, now)
            ti_store.apply_changes(conn, plan.changes, now)
            for run_id, placeholder in plan.expansions:
                self._expand(conn, run_id, placeholder, now)
                advanced.dirty.add(run_id)
            for run_id, state in plan.finished:
                self._finish(conn, run_id, state, now, advanced)
            if not plan.expansions:
                break
            runs = run_store.running_runs(conn, [run_id for run_id, _ in plan.expansions])
        return advanced

    def _plan(self, conn: Connection, runs: Sequence[Any], now: datetime) -> planner.RunPlan:
        tis_by_run: dict[int, list[planner.TIView]] = {run.id: [] for run in runs}
        for ti in ti_store.of_runs(conn, list(tis_by_run)):
            tis_by_run[ti.dag_run_id].append(
                planner.TIView(ti.id, ti.task_id, ti.map_index, TIState(ti.state), ti.next_retry_at)
            )
        views = []
        for run in runs:
            self.runs.remember(run.id, run.dag_id, run.bundle_version)
            shape = self.specs.shape(run.dag_id, run.bundle_version)
            views.append(planner.RunView(run.id, run.dag_id, shape, tis_by_run[run.id]))
        return planner.plan_runs(views, now)

    def _expand(
        self, conn: Connection, run_id: int, placeholder: planner.TIView, now: datetime
    ) -> None:
        dag_id, version = self.runs.key(run_id)
        shape = self.specs.shape(dag_id, version)
        task = shape.spec.tasks[placeholder.task_id]
        sources = shape.expand_sources.get(task.task_id, frozenset())
        values = resolve_refs(task.expand, ti_store.results_of(conn, run_id, sources))
        lengths = {name: len(v) for name, v in values.items() if isinstance(v, list)}
        if len(lengths) != len(values) or len(set(lengths.values())) > 1:
            log.error(
                "task.expand_failed dag=%s task=%s: expand() needs lists of equal length, got %s",
                dag_id,
                task.task_id,
                {k: type(v).__name__ for k, v in values.items()},
            )
            ti_store.apply_changes(
                conn, [StateChange(placeholder.id, TIState.PENDING, TIState.UPSTREAM_FAILED)], now
            )
        else:
            ti_store.expand(conn, placeholder.id, next(iter(lengths.values()), 0), now)

    def _finish(
        self, conn: Connection, run_id: int, state: RunState, now: datetime, advanced: Advanced
    ) -> None:
        self.runs.forget(run_id)
        if not run_store.finish_run(conn, run_id, state, now):
            return
        run = run_store.get_run_by_id(conn, run_id)
        advanced.finished.append((run, state))
        log.info("run.finished dag=%s run=%s state=%s", run.dag_id, run.run_id, state)
        spec = self.specs(run.dag_id, run.bundle_version)
        callback = "on_success" if state == RunState.SUCCESS else "on_failure"
        if callback not in spec.callbacks:
            return
        path = dispatch.callback_log_path(run, callback)
        try:
            workload = dispatch.callback_workload(run, spec, callback, str(state), path)
        except Exception as exc:  # e.g. a stored conf too deep to read: the run stays finished
            log.error(
                "callback.undispatchable dag=%s run=%s callback=%s: %s",
                run.dag_id,
                run.run_id,
                callback,
                dispatch_error(exc),
            )
            return
        advanced.callbacks.append(workload)
