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
  once when the caller rings its doorbell (`scheduler.wakeup.ring`) after committing. The run
  does not wait for a max_active_runs slot again.
- Rows are read FOR UPDATE (PostgreSQL, MySQL; SQLite has one writer at a time), task
  instances in ascending id order before their tries and their run (ADR 15, the order
  `tries.record_outcomes` takes them in too), and every update is guarded by the old state:
  an action that loses a race anyway raises ConflictError and, its transaction rolled back,
  changes nothing.
- With `dry_run` nothing is written: the answer is what the action would change.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, func, select, update

from drayman.exceptions import ConflictError, NotFoundError
from drayman.spec import DagSpec, referenced_tasks
from drayman.states import (
    RUN_MANUAL_TRANSITIONS,
    TI_ACTIVE,
    TI_CLEARABLE,
    TI_MARKS,
    TI_ONLY_FAILED,
    RunState,
    TIState,
    TryState,
    can_transition_manually,
)
from drayman.store import dags as dag_store
from drayman.store import task_instances as ti_store
from drayman.store.rows import DagRunRow, LockedTaskInstance, one_as
from drayman.store.schema import dag_run, task_instance, task_try
from drayman.store.task_instances import NOT_YET_TRIED
from drayman.store.tries import UNFINISHED


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
    run, spec = _started_run(conn, dag_id, run_id)
    selected = select_tasks(spec, task_ids, downstream=downstream, upstream=upstream)
    rows = _task_instances(conn, run.id, selected, set(task_ids), map_index)
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
    run, spec = _started_run(conn, dag_id, run_id)
    rows = _task_instances(conn, run.id, set(spec.tasks), set(), None)
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
    run, spec = _started_run(conn, dag_id, run_id)
    selected = select_tasks(spec, task_ids, downstream=downstream, upstream=upstream)
    rows = _task_instances(conn, run.id, selected, set(task_ids), map_index)
    chosen = [r for r in rows if r.state != state and r.state != TIState.REMOVED]
    if chosen and not dry_run:
        _fence(conn, chosen, now, f"marked {state} by {by or 'hand'}")
        for old, ids in _group(chosen, lambda r: r.state).items():
            _guarded_update(
                conn,
                ids,
                old,
                state,
                end_date=now,
                start_date=func.coalesce(task_instance.c.start_date, now),
                next_retry_at=None,
                current_try_id=None,
            )
        _reopen(conn, run)
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
    run, spec = _started_run(conn, dag_id, run_id)
    if task_id not in spec.tasks:
        raise NotFoundError(f"DAG {dag_id!r} has no task {task_id!r} in run {run_id!r}")
    rows = [
        r for r in _task_instances(conn, run.id, {task_id}, set(), None) if r.map_index == map_index
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
        _fence(conn, rows, now, f"cancelled by {by or 'hand'}")
        _guarded_update(
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


# -- steps -----------------------------------------------------------------------------------


def _started_run(conn: Connection, dag_id: str, run_id: str) -> tuple[DagRunRow, DagSpec]:
    """The run and its pinned spec.

    The run's row is not locked here: task instances are locked first and the run is updated
    last, in the scheduler's own order, so the two never wait on each other in a circle.
    """
    dag_store.get_dag(conn, dag_id)  # "no DAG" is a clearer error than "no run"
    found = conn.execute(
        select(dag_run).where(dag_run.c.dag_id == dag_id, dag_run.c.run_id == run_id)
    ).first()
    if found is None:
        raise NotFoundError(
            f"DAG {dag_id!r} has no run {run_id!r}; `drayman runs list --dag {dag_id}` lists them"
        )
    run = one_as(DagRunRow, found)
    if run.state == RunState.QUEUED:
        raise ConflictError(
            f"run {run_id!r} of DAG {dag_id!r} is queued: it has not started, so it has no task "
            "instances to clear or mark yet"
        )
    return run, dag_store.load_spec(conn, dag_id, run.bundle_version)


def _task_instances(
    conn: Connection,
    run_pk: int,
    task_ids: Collection[str],
    named: Collection[str],
    map_index: int | None,
) -> list[LockedTaskInstance]:
    """The run's task instances of `task_ids`, locked; `map_index` narrows the `named` ones.

    Found first, then locked by id in ascending order (ADR 15), the order every writer of
    try states takes them in: locking them through the run's index would take them in task
    id order on InnoDB, and an outcome batch waiting on one while holding another would
    deadlock with this action. A task instance created between the two reads (an expansion)
    is left out, as if the action had come first.
    """
    ids = conn.execute(
        select(task_instance.c.id).where(
            task_instance.c.dag_run_id == run_pk, task_instance.c.task_id.in_(task_ids)
        )
    ).scalars()
    rows = ti_store.lock_by_id(conn, ids)
    if map_index is None:
        return rows
    for task_id in named:
        if not any(r.task_id == task_id and r.map_index == map_index for r in rows):
            raise NotFoundError(f"task {task_id!r} has no task instance with map index {map_index}")
    return [r for r in rows if r.task_id not in named or r.map_index == map_index]


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
        again = _expanding_again(spec, chosen)
        undone = [r for r in rows if r.task_id in again]
        # an element that is not chosen (only_failed) but is REMOVED with its expansion
        # must not keep a try running either
        ending = {r.id: r for r in [*chosen, *undone]}
        _fence(conn, list(ending.values()), now, f"cleared by {by or 'hand'}")
        if again:
            _unexpand(conn, spec, undone, now)
        to_pending = [r for r in chosen if r.task_id not in again or r.map_index < 0]
        groups = _group(to_pending, lambda r: (r.state, spec.tasks[r.task_id].retries))
        for (old, retries), ids in groups.items():
            _guarded_update(
                conn,
                ids,
                old,
                TIState.PENDING,
                max_tries=task_instance.c.try_number + retries + 1,
                **NOT_YET_TRIED,
            )
        _reopen(conn, run)
    return _keys(chosen)


def _expanding_again(spec: DagSpec, chosen: Sequence[LockedTaskInstance]) -> set[str]:
    """The mapped tasks among `chosen` whose input comes from a task cleared with them."""
    cleared = {r.task_id for r in chosen}
    return {
        task_id
        for task_id in cleared
        if spec.tasks[task_id].is_mapped and referenced_tasks(spec.tasks[task_id].expand) & cleared
    }


def _unexpand(
    conn: Connection, spec: DagSpec, rows: Sequence[LockedTaskInstance], now: datetime
) -> None:
    """Undo mapped tasks' expansions: elements REMOVED, each expanded placeholder PENDING.

    Not a person's transition (`states.TI_MANUAL_TRANSITIONS`): the store's own bookkeeping
    so that the scheduler expands these tasks again, to the width of their new input.
    """
    elements = [r for r in rows if r.map_index >= 0 and r.state != TIState.REMOVED]
    for old, ids in _group(elements, lambda r: r.state).items():
        _update_if_still(
            conn, ids, old, TIState.REMOVED, end_date=now, current_try_id=None, next_retry_at=None
        )
    placeholders = [r for r in rows if r.map_index < 0 and r.state == TIState.REMOVED]
    for row in placeholders:
        _update_if_still(
            conn,
            [row.id],
            TIState.REMOVED,
            TIState.PENDING,
            max_tries=spec.tasks[row.task_id].retries + 1,
            end_date=None,
        )


def _fence(
    conn: Connection, rows: Sequence[LockedTaskInstance], now: datetime, reason: str
) -> None:
    """End the current try of each QUEUED or RUNNING task instance: its outcome won't count.

    The task instance's `current_try_id` is nulled by the caller's update, in this
    transaction; `tries.record_outcomes` accepts only an unfinished, current try.
    """
    try_ids = [r.current_try_id for r in rows if r.state in TI_ACTIVE and r.current_try_id]
    if not try_ids:
        return
    fenced = conn.execute(
        update(task_try)
        .where(task_try.c.id.in_(try_ids), task_try.c.state.in_(UNFINISHED))
        .values(
            state=TryState.FAILED,
            end_date=now,
            error=f"{reason}: this try no longer counts, and its outcome will be refused",
        )
    ).rowcount
    if fenced != len(try_ids):  # the task instances are locked: only a bug gets here
        raise ConflictError(
            f"{len(try_ids) - fenced} of {len(try_ids)} tries ended meanwhile though their task "
            "instances were locked: nothing was changed; look at the run again and retry"
        )


def _group(
    rows: Iterable[LockedTaskInstance], key: Callable[[LockedTaskInstance], Any]
) -> dict[Any, list[int]]:
    groups: dict[Any, list[int]] = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row.id)
    return groups


def _guarded_update(
    conn: Connection, ids: Sequence[int], old: str, new: TIState, **values: Any
) -> None:
    """Move task instances from `old` to `new`; ConflictError if one was no longer `old`."""
    if not can_transition_manually(TIState(old), new):
        raise ValueError(
            f"{old} -> {new} is not a transition a person may make "
            "(see drayman.states.TI_MANUAL_TRANSITIONS)"
        )
    _update_if_still(conn, ids, old, new, **values)


def _update_if_still(
    conn: Connection, ids: Sequence[int], old: str, new: TIState, **values: Any
) -> None:
    """Move task instances from `old` to `new`; ConflictError if one was no longer `old`."""
    changed = conn.execute(
        update(task_instance)
        .where(task_instance.c.id.in_(ids), task_instance.c.state == old)
        .values(state=new, **values)
    ).rowcount
    if changed != len(ids):
        raise ConflictError(
            f"{len(ids) - changed} task instance(s) left state {old} meanwhile: nothing was "
            "changed; look at the run again and retry"
        )


def _reopen(conn: Connection, run: DagRunRow) -> None:
    """A finished run runs again so the scheduler plans what was cleared or marked."""
    if RunState.RUNNING not in RUN_MANUAL_TRANSITIONS[RunState(run.state)]:
        return
    changed = conn.execute(
        update(dag_run)
        .where(dag_run.c.id == run.id, dag_run.c.state == run.state)
        .values(state=RunState.RUNNING, end_date=None, callback_claimed_at=None)
    ).rowcount
    if changed != 1:
        raise ConflictError(f"run {run.run_id!r} changed state meanwhile: nothing was changed")


def _keys(rows: Iterable[LockedTaskInstance]) -> list[TIKey]:
    return [TIKey(r.task_id, r.map_index) for r in rows]
