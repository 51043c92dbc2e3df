"""Tries: one row per attempt at a task instance, fenced by the try's id.

The try id is the fencing token. A start or an outcome is accepted only while the try is
unfinished and is still its task instance's `current_try_id`; a worker whose try was declared
lost (or a redelivered message) can write nothing, so two tries of one task never both count.
Whoever writes a try's state locks its task instance first, task instances in ascending id
order (ADR 15), so a fence raised meanwhile is seen and no two writers deadlock.

This module is the write path (create, start, record outcomes); its neighbours are the other
rooms of the same noun: `try_claims` (a remote worker's claim), `try_liveness` (which tries
are over, unclaimed, or held by a dead worker) and `try_history` (what a run's tries were).
It runs a little over 400 lines: its hot statements are built once, next to the function that
runs each and the comment on why it is shaped so (lock order, fences), which a split would part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Integer,
    String,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)

from drayman.exceptions import ConflictError
from drayman.retry import decide_retry
from drayman.states import TI_ACTIVE, TIState, TryState
from drayman.store import task_instances
from drayman.store.rows import LockedTaskInstance, TaskInstanceRow, all_as
from drayman.store.schema import dag_run, task_instance, task_try
from drayman.workloads import TryOutcome, TryStarted

UNFINISHED = (TryState.QUEUED, TryState.RUNNING)


@dataclass(frozen=True)
class NewTry:
    """A try just created for a task instance that was SCHEDULED."""

    try_id: int
    ti_id: int
    dag_run_id: int
    task_id: str
    map_index: int
    try_number: int
    max_tries: int
    log_path: str


@dataclass(frozen=True)
class Recorded:
    """What recording an outcome did to the task instance."""

    ti_id: int
    dag_run_id: int
    task_id: str
    state: TIState
    try_number: int
    max_tries: int
    try_id: int


def create_tries(
    conn: Connection,
    tis: Sequence[TaskInstanceRow],
    *,
    log_paths: Sequence[str],
    worker_id: int | None,
    now: datetime,
) -> list[NewTry]:
    """Move SCHEDULED task instances to QUEUED, each with a new try that becomes its fence.

    Three statements whatever the batch size. The rows must have been read in this
    transaction by `task_instances.schedulable`, which locks them (SKIP LOCKED) where the
    database allows several schedulers, so the claim below cannot lose a race; if it does
    anyway, the whole transaction is refused rather than half-applied.
    """
    if not tis:
        return []
    ids = [ti.id for ti in tis]
    claimed = conn.execute(
        update(task_instance)
        .where(task_instance.c.id.in_(ids), task_instance.c.state == TIState.SCHEDULED)
        .values(
            state=TIState.QUEUED,
            try_number=task_instance.c.try_number + 1,
            queued_at=now,
            next_retry_at=None,
        )
    ).rowcount
    if claimed != len(ids):
        raise ConflictError(
            f"{len(ids) - claimed} of {len(ids)} task instances were taken by another scheduler"
        )
    inserted = conn.execute(
        insert(task_try).returning(
            task_try.c.id, task_try.c.task_instance_id, sort_by_parameter_order=True
        ),
        [
            {
                "task_instance_id": ti.id,
                "try_number": ti.try_number + 1,
                "state": TryState.QUEUED,
                "worker_id": worker_id,
                "queued_at": now,
                "log_path": log_path,
            }
            for ti, log_path in zip(tis, log_paths, strict=True)
        ],
    ).all()
    conn.execute(
        update(task_instance)
        .where(task_instance.c.id.in_(ids))
        .values(
            current_try_id=select(func.max(task_try.c.id))
            .where(task_try.c.task_instance_id == task_instance.c.id)
            .scalar_subquery()
        )
    )
    return [
        NewTry(
            try_id=int(row.id),
            ti_id=ti.id,
            dag_run_id=ti.dag_run_id,
            task_id=ti.task_id,
            map_index=ti.map_index,
            try_number=ti.try_number + 1,
            max_tries=ti.max_tries,
            log_path=log_path,
        )
        for ti, row, log_path in zip(tis, inserted, log_paths, strict=True)
    ]


# Hot statements, built once: SQLAlchemy then computes their cache keys once too, instead of
# on every call (a measurable share of a worker's CPU per try).
_START_TI = (
    update(task_instance)
    .where(
        task_instance.c.current_try_id == bindparam("b_try"),
        task_instance.c.state == TIState.QUEUED,
    )
    .values(state=TIState.RUNNING, start_date=bindparam("b_start"))
)
# what starting a try writes, here and in `try_claims`
START_VALUES: dict[str, Any] = {
    "state": TryState.RUNNING,
    "start_date": bindparam("b_start"),
    "hostname": bindparam("b_host"),
    "pid": bindparam("b_pid"),
}
_START_TRY_WHERE = (
    task_try.c.id == bindparam("b_try"),
    task_try.c.state == TryState.QUEUED,
    select(task_instance.c.id).where(task_instance.c.current_try_id == task_try.c.id).exists(),
)
_START_TRY = update(task_try).where(*_START_TRY_WHERE).values(**START_VALUES)
_START_TRY_OF_WORKER = (
    update(task_try)
    .where(*_START_TRY_WHERE)
    .values(**START_VALUES, worker_id=bindparam("b_worker"))
)


def record_started(conn: Connection, event: TryStarted, *, worker_id: int | None = None) -> bool:
    """Mark a try RUNNING. False when the fence refuses it."""
    return record_started_many(conn, [event], worker_id=worker_id) == 1


def record_started_many(
    conn: Connection, events: Sequence[TryStarted], *, worker_id: int | None = None
) -> int:
    """Mark tries RUNNING, three statements for the whole batch (four on MySQL for several
    tries). Returns how many were taken.

    The task instances are locked first, in the one order (`lock_current`, ADR 15): updated
    one event after another, they would be locked in the order the events came in.
    """
    if not events:
        return 0
    lock_current(conn, [e.try_id for e in events])
    params = [
        {
            "b_try": e.try_id,
            "b_start": e.started_at,
            "b_host": e.hostname,
            "b_pid": e.pid,
            "b_worker": worker_id,
        }
        for e in events
    ]
    taken = conn.execute(_START_TI, params).rowcount
    conn.execute(_START_TRY if worker_id is None else _START_TRY_OF_WORKER, params)
    return int(taken)


@dataclass(frozen=True, slots=True)
class RetrySubject:
    """What a retry delay depends on, for one try: its task in its DAG's pinned version, its
    number, and its task instance (the seed that spreads retries of tasks that failed together).
    """

    try_id: int
    ti_id: int
    dag_id: str
    bundle_version: str
    task_id: str
    try_number: int


def retry_subjects(conn: Connection, outcomes: Sequence[TryOutcome]) -> list[RetrySubject]:
    """The failed tries among `outcomes` whose task instance has a try left: those whose
    outcome needs a retry delay. Read without a lock.

    A caller computes each one's delay (`retry.retry_delay_s`, from the task's spec) and hands
    them to `record_outcomes`. Nothing read here changes while a try is current (only a clear
    or mark changes `max_tries`, and it fences the try off first), and `record_outcomes`
    refuses a try that is no longer current, so no lock is needed.
    """
    failed = sorted({o.try_id for o in outcomes if not o.succeeded and not o.handed_back})
    if not failed:
        return []
    return all_as(RetrySubject, conn.execute(_RETRY_SUBJECTS, {"b_ids": failed}))


_RETRY_SUBJECTS = (
    select(
        task_try.c.id.label("try_id"),
        task_instance.c.id.label("ti_id"),
        dag_run.c.dag_id,
        dag_run.c.bundle_version,
        task_instance.c.task_id,
        task_try.c.try_number,
    )
    .join(task_instance, task_instance.c.id == task_try.c.task_instance_id)
    .join(dag_run, dag_run.c.id == task_instance.c.dag_run_id)
    .where(
        task_try.c.id.in_(bindparam("b_ids", expanding=True)),
        task_instance.c.try_number < task_instance.c.max_tries,
    )
    .order_by(task_try.c.id)
)


def record_outcome(
    conn: Connection, outcome: TryOutcome, *, retry_delays: Mapping[int, float]
) -> Recorded | None:
    """Record how a try ended and move its task instance on. None when the fence refuses it.

    `retry_delays` maps try ids to the wait before the next try (see `record_outcomes`).
    """
    recorded = record_outcomes(conn, [outcome], retry_delays=retry_delays)
    return recorded[0] if recorded else None


# The task instances whose current, active try is one of `b_ids`: on PostgreSQL one statement
# that sorts, then locks, in id order, and re-checks the fence on a row it had to wait for (so a
# try fenced off meanwhile drops out); SQLite has one writer at a time and ignores FOR UPDATE.
_LOCK_CURRENT = (
    select(task_instance, task_instance.c.current_try_id.label("fence"))
    .where(
        task_instance.c.current_try_id.in_(bindparam("b_ids", expanding=True)),
        task_instance.c.state.in_(sorted(TI_ACTIVE)),
    )
    .order_by(task_instance.c.id)
    .with_for_update()
)
# InnoDB locks rows in the order it scans them, which for `current_try_id IN` is try-id order:
# there the task instances of several tries are found first (a try's task instance never
# changes) and locked by primary key, in id order.
_TIS_OF_TRIES = select(task_try.c.task_instance_id).where(
    task_try.c.id.in_(bindparam("b_ids", expanding=True))
)
_ACTIVE = or_(task_instance.c.state == TIState.QUEUED, task_instance.c.state == TIState.RUNNING)
_FINISH_TI = (
    update(task_instance)
    .where(
        task_instance.c.id == bindparam("b_ti"),
        task_instance.c.current_try_id == bindparam("b_try"),
        _ACTIVE,  # no IN (...) here: executemany cannot expand it
    )
    .values(
        state=bindparam("b_state"),
        start_date=bindparam("b_start"),
        end_date=bindparam("b_end"),
        result=bindparam("b_result"),
        next_retry_at=bindparam("b_retry"),
        max_tries=bindparam("b_max"),
    )
)
_FINISH_TRY = (
    update(task_try)
    .where(
        task_try.c.id == bindparam("b_try"),
        or_(task_try.c.state == TryState.QUEUED, task_try.c.state == TryState.RUNNING),
    )
    .values(
        state=bindparam("b_state"),
        start_date=bindparam("b_start"),
        end_date=bindparam("b_end"),
        exit_code=bindparam("b_exit"),
        signal=bindparam("b_signal"),
        error=bindparam("b_error"),
        hostname=func.coalesce(bindparam("b_host", type_=String), task_try.c.hostname),
        pid=func.coalesce(bindparam("b_pid", type_=Integer), task_try.c.pid),
    )
)


def lock_current(conn: Connection, try_ids: Sequence[int]) -> list[LockedTaskInstance]:
    """The QUEUED or RUNNING task instances whose current try is among `try_ids`, locked.

    Task instance rows are locked in ascending id order, before any try row is written: the
    order every writer of try states follows (ADR 15), so none of them deadlocks another.
    Once this returns, nobody can fence these tries off until the transaction ends.
    """
    wanted = sorted(set(try_ids))
    if not wanted:
        return []
    if conn.dialect.name == "mysql" and len(wanted) > 1:  # one row has no order to get wrong
        rows = lock_tis_of_tries(conn, wanted)
    else:
        rows = all_as(LockedTaskInstance, conn.execute(_LOCK_CURRENT, {"b_ids": wanted}))
    taken = set(wanted)
    return [r for r in rows if r.fence in taken and r.state in TI_ACTIVE]


def lock_tis_of_tries(conn: Connection, try_ids: Sequence[int]) -> list[LockedTaskInstance]:
    """The task instances of these tries, locked by primary key in ascending id order."""
    ti_ids = conn.execute(_TIS_OF_TRIES, {"b_ids": sorted(set(try_ids))}).scalars()
    return task_instances.lock_by_id(conn, ti_ids)


def record_outcomes(
    conn: Connection,
    outcomes: Sequence[TryOutcome],
    *,
    retry_delays: Mapping[int, float],
) -> list[Recorded]:
    """Record a batch of outcomes; what it returns is exactly what was written.

    `retry_delays` maps the id of each failed try (`retry_subjects`) to the wait before its
    task instance's next try, used when one is left (`retry.decide_retry`): the store knows
    no DAG, so the caller computes the delays. A retry whose delay is missing is refused
    (ValueError) rather than guessed.

    Three statements whatever the batch size (four on MySQL for several tries): lock the task
    instances whose current try is reported (`lock_current`), then finish them and their
    tries, each update guarded by the state it expects and the fence. An outcome whose try
    was fenced off (a cancel, clear or mark that committed first, or a try declared lost) is
    left out of the answer, so its worker logs it as refused. Were a guarded update to find
    fewer rows than were locked, some writer broke the lock order: the batch is refused whole
    (ConflictError) rather than reported as recorded when it was not.
    """
    if not outcomes:
        return []
    by_try = {o.try_id: o for o in outcomes}
    current = lock_current(conn, list(by_try))
    if not current:
        return []
    ti_params, try_params, recorded = [], [], []
    for fence, ti in [(r.fence, r) for r in current if r.fence is not None]:
        outcome = by_try[fence]
        state, next_retry_at = _next_state(ti, outcome, retry_delays.get(fence))
        # a try handed back by a stopping worker gives its retry back
        max_tries = ti.max_tries + 1 if outcome.handed_back else ti.max_tries
        ti_params.append(
            {
                "b_ti": ti.id,
                "b_try": fence,
                "b_state": state,
                "b_start": ti.start_date or outcome.started_at,
                "b_end": outcome.ended_at,
                "b_result": outcome.result_json if outcome.succeeded else None,
                "b_retry": next_retry_at,
                "b_max": max_tries,
            }
        )
        try_params.append(_try_values(outcome))
        recorded.append(
            Recorded(ti.id, ti.dag_run_id, ti.task_id, state, ti.try_number, max_tries, fence)
        )
    _expect(conn.execute(_FINISH_TI, ti_params).rowcount, len(current), "task instances")
    _expect(conn.execute(_FINISH_TRY, try_params).rowcount, len(current), "tries")
    return recorded


def _expect(changed: int, locked: int, what: str) -> None:
    if changed != locked:
        raise ConflictError(
            f"recording outcomes changed {changed} of {locked} locked {what}: a writer did not "
            "take the task instance's lock first (ADR 15); nothing was recorded, try again"
        )


def _next_state(
    ti: LockedTaskInstance, outcome: TryOutcome, delay_s: float | None
) -> tuple[TIState, datetime | None]:
    if outcome.succeeded:
        return TIState.SUCCESS, None
    return decide_retry(
        try_number=ti.try_number,
        max_tries=ti.max_tries,
        ended_at=outcome.ended_at,
        delay_s=delay_s,
        handed_back=outcome.handed_back,
    )


def _try_values(outcome: TryOutcome) -> dict[str, Any]:
    return {
        "b_try": outcome.try_id,
        "b_state": TryState.SUCCESS if outcome.succeeded else TryState.FAILED,
        "b_start": outcome.started_at,
        "b_end": outcome.ended_at,
        "b_exit": outcome.exit_code,
        "b_signal": outcome.signal,
        "b_error": outcome.error,
        "b_host": outcome.hostname or None,
        "b_pid": outcome.pid,
    }
