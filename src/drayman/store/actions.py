"""What a person does to a run by hand: clear task instances, clear a run, mark success/failed.

The scheduler only moves task instances forward (`states.TI_TRANSITIONS`). These actions move
them back (clear: to PENDING, so a new try follows) or across (mark: to SUCCESS or FAILED), by
`states.TI_MANUAL_TRANSITIONS` only, in the caller's transaction:

- The task graph is the run's pinned DagSpec (its bundle version), not the DAG's newest one.
- Selection: the named tasks, and with `downstream` / `upstream` every task after / before
  them, transitively. A task means all its task instances: every element of a mapped task's
  expansion (or, with `map_index`, one element of the named tasks).
- Clearing keeps the old tries as history: the next try continues the numbering, and
  max_tries becomes try_number + retries + 1, so a cleared task gets all its retries again
  (as in Airflow). Its result, dates and retry time are reset.
- A mapped task cleared on its own keeps its expansion: its elements are cleared. Cleared
  together with a task its input comes from, it expands again, since that input may now
  have another length: its elements become REMOVED (their tries kept as history) and its
  placeholder PENDING; when the input is there, `task_instances.expand` brings back the
  elements that still exist (their try numbering continues) and adds the new ones. A
  placeholder that never expanded (skipped, upstream_failed) goes back to PENDING and
  expands when its upstream is done.
- Marking sets the state and the end date. Already-marked task instances are left alone.
- A QUEUED or RUNNING task instance is fenced off (ADR 4) in the same transaction: its try is
  recorded FAILED with who cleared, marked or cancelled it, and `current_try_id` becomes NULL,
  so the worker's late start or outcome is refused. Whoever runs the try's process sees that
  the store ended it and kills its process group (ADR 12): the scheduler's local executor at
  once when the doorbell rings (else at its next heartbeat), a remote worker within a second.
- Cancelling stops one QUEUED or RUNNING task instance's try: the task instance FAILS at once,
  without the retries it has left (a person asked it to stop; clearing it runs it again).
- A finished run goes back to RUNNING without an end date (`states.RUN_MANUAL_TRANSITIONS`),
  so the scheduler plans it again and decides its outcome anew: at its next full scan, or at
  once when the caller rings its doorbell (`drayman.wakeup.ring`) after committing. The run
  does not wait for a max_active_runs slot again.
- Rows are read FOR UPDATE (PostgreSQL, MySQL; SQLite has one writer at a time), task
  instances in ascending id order before their tries and their run (ADR 15, the order
  `tries.record_outcomes` takes them in too), and every update is guarded by the old state:
  an action that loses a race anyway raises ConflictError and, its transaction rolled back,
  changes nothing.
- With `dry_run` nothing is written: the answer is what the action would change.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Connection, func

from drayman.exceptions import ConflictError, NotFoundError
from drayman.spec import DagSpec
from drayman.states import (
    TI_ACTIVE,
    TI_CLEARABLE,
    TI_MARKS,
    TI_ONLY_FAILED,
    TIState,
)
from drayman.store import manual_steps as steps
from drayman.store.rows import DagRunRow, LockedTaskInstance
from drayman.store.schema import task_instance
from drayman.store.task_instances import NOT_YET_TRIED


class TIKey(NamedTuple):
    """One task instance of a run: what an action changed (or, dry, would change)."""

    task_id: str
    map_index: int


# -- selection (pure) ------------------------------------------------------------------------


def select_tasks(
    spec: DagSpec, task_ids: Iterable[str], *, downstream: bool, upstream: bool
) -> set[str]:
    """The named tasks and, as asked, all their downstream and upstream tasks (transitively).

    NotFoundError names a task the DAG (at this version) does not have.
    """
    named = list(task_ids)
    unknown = [t for t in named if t not in spec.tasks]
    if unknown:
        raise NotFoundError(
            f"DAG {spec.dag_id!r} has no task {unknown[0]!r} at the run's bundle version; "
            f"its tasks are: {', '.join(sorted(spec.tasks))}"
        )
    selected = set(named)
    if downstream:
        selected |= _reachable(named, spec.downstream())
    if upstream:
        ups = {task_id: list(task.upstream) for task_id, task in spec.tasks.items()}
        selected |= _reachable(named, ups)
    return selected


def _reachable(start: Iterable[str], edges: dict[str, list[str]]) -> set[str]:
    seen: set[str] = set()
    frontier = list(start)
    while frontier:
        for nxt in edges[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    return seen


# -- the actions -----------------------------------------------------------------------------


def clear_task_instances(
    conn: Connection,
    dag_id: str,
    run_id: str,
    task_ids: Sequence[str],
    *,
    downstream: bool = False,
    upstream: bool = False,
    only_failed: bool = False,
    map_index: int | None = None,
    dry_run: bool = False,
    now: datetime,
    by: str = "",
) -> list[TIKey]:
    """Clear these tasks of one run (see the module docstring); the task instances cleared.

    `only_failed` keeps only FAILED and UPSTREAM_FAILED ones; PENDING ones are left as they
    are. `by` (who acted) goes into the error of a fenced-off try.
    """
    if not task_ids:
        raise ValueError("clear_task_instances needs at least one task id; see clear_run")
    run, spec = steps.started_run(conn, dag_id, run_id)
    selected = select_tasks(spec, task_ids, downstream=downstream, upstream=upstream)
    rows = steps.locked_task_instances(conn, run.id, selected, set(task_ids), map_index)
    return _clear(conn, run, spec, rows, only_failed, dry_run, now, by)


def clear_run(
    conn: Connection,
    dag_id: str,
    run_id: str,
    *,
    only_failed: bool = False,
    dry_run: bool = False,
    now: datetime,
    by: str = "",
) -> list[TIKey]:
    """Clear every task of one run; the task instances cleared."""
    run, spec = steps.started_run(conn, dag_id, run_id)
    rows = steps.locked_task_instances(conn, run.id, set(spec.tasks), set(), None)
    return _clear(conn, run, spec, rows, only_failed, dry_run, now, by)


def mark_task_instances(
    conn: Connection,
    dag_id: str,
    run_id: str,
    task_ids: Sequence[str],
    *,
    state: TIState,
    downstream: bool = False,
    upstream: bool = False,
    map_index: int | None = None,
    dry_run: bool = False,
    now: datetime,
    by: str = "",
) -> list[TIKey]:
    """Mark these tasks of one run SUCCESS or FAILED; the task instances that changed."""
    if state not in TI_MARKS:
        raise ValueError(f"a task instance can be marked success or failed, not {state!r}")
    if not task_ids:
        raise ValueError("mark_task_instances needs at least one task id")
    run, spec = steps.started_run(conn, dag_id, run_id)
    selected = select_tasks(spec, task_ids, downstream=downstream, upstream=upstream)
    rows = steps.locked_task_instances(conn, run.id, selected, set(task_ids), map_index)
    chosen = [r for r in rows if r.state != state and r.state != TIState.REMOVED]
    if chosen and not dry_run:
        steps.fence(conn, chosen, now, f"marked {state} by {by or 'hand'}")
        for old, ids in steps.group_ids(chosen, lambda r: r.state).items():
            steps.guarded_update(
                conn,
                ids,
                old,
                state,
                end_date=now,
                start_date=func.coalesce(task_instance.c.start_date, now),
                next_retry_at=None,
                current_try_id=None,
            )
        steps.reopen(conn, run)
    return _keys(chosen)


def cancel_task_instance(
    conn: Connection,
    dag_id: str,
    run_id: str,
    task_id: str,
    *,
    map_index: int = -1,
    dry_run: bool = False,
    now: datetime,
    by: str = "",
) -> list[TIKey]:
    """Stop the try of one QUEUED or RUNNING task instance; it fails without further retries.

    ConflictError when the task instance is not queued or running: there is nothing to stop.
    """
    run, spec = steps.started_run(conn, dag_id, run_id)
    if task_id not in spec.tasks:
        raise NotFoundError(f"DAG {dag_id!r} has no task {task_id!r} in run {run_id!r}")
    rows = [
        r
        for r in steps.locked_task_instances(conn, run.id, {task_id}, set(), None)
        if r.map_index == map_index
    ]
    if not rows:
        hint = " (a mapped task: give the element's map index)" if map_index == -1 else ""
        raise NotFoundError(
            f"task {task_id!r} has no task instance with map index {map_index}{hint}"
        )
    row = rows[0]
    if row.state not in TI_ACTIVE:
        raise ConflictError(
            f"task {task_id!r} of run {run_id!r} is {row.state}, not queued or running: there "
            "is no try to cancel (clear it to run it again)"
        )
    if not dry_run:
        steps.fence(conn, rows, now, f"cancelled by {by or 'hand'}")
        steps.guarded_update(
            conn,
            [row.id],
            row.state,
            TIState.FAILED,
            end_date=now,
            start_date=func.coalesce(task_instance.c.start_date, now),
            next_retry_at=None,
            current_try_id=None,
        )
    return _keys(rows)


# -- clearing --------------------------------------------------------------------------------


def _clear(
    conn: Connection,
    run: DagRunRow,
    spec: DagSpec,
    rows: Sequence[LockedTaskInstance],
    only_failed: bool,
    dry_run: bool,
    now: datetime,
    by: str,
) -> list[TIKey]:
    wanted = TI_ONLY_FAILED if only_failed else TI_CLEARABLE
    chosen = [r for r in rows if r.state in wanted]
    if chosen and not dry_run:
        again = steps.expanding_again(spec, chosen)
        undone = [r for r in rows if r.task_id in again]
        # an element that is not chosen (only_failed) but is REMOVED with its expansion
        # must not keep a try running either
        ending = {r.id: r for r in [*chosen, *undone]}
        steps.fence(conn, list(ending.values()), now, f"cleared by {by or 'hand'}")
        if again:
            steps.unexpand(conn, spec, undone, now)
        to_pending = [r for r in chosen if r.task_id not in again or r.map_index < 0]
        groups = steps.group_ids(to_pending, lambda r: (r.state, spec.tasks[r.task_id].retries))
        for (old, retries), ids in groups.items():
            steps.guarded_update(
                conn,
                ids,
                old,
                TIState.PENDING,
                max_tries=task_instance.c.try_number + retries + 1,
                **NOT_YET_TRIED,
            )
        steps.reopen(conn, run)
    return _keys(chosen)


def _keys(rows: Iterable[LockedTaskInstance]) -> list[TIKey]:
    return [TIKey(r.task_id, r.map_index) for r in rows]
