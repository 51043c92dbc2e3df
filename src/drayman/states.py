"""Run and task-instance states, and the transitions the scheduler may make.

Pure: imports nothing of drayman's. The store writes only transitions listed here, so a bug
elsewhere shows up as an error instead of a task that silently runs twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class RunState(StrEnum):
    """The state of one DAG run."""

    QUEUED = "queued"  # created, waiting for a max_active_runs slot
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"


class TIState(StrEnum):
    """The state of one task instance (one task in one run, one map index)."""

    PENDING = "pending"  # waiting for its upstream tasks
    SCHEDULED = "scheduled"  # dependencies met, waiting for a slot (pool, parallelism, ...)
    QUEUED = "queued"  # handed to the executor, not yet started
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    UP_FOR_RETRY = "up_for_retry"  # failed, another try is due at next_retry_at
    UPSTREAM_FAILED = "upstream_failed"
    SKIPPED = "skipped"
    REMOVED = "removed"  # a mapped placeholder replaced by its expansion


class TryState(StrEnum):
    """The state of one try (one attempt at running a task instance)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"


class RunType(StrEnum):
    """Why a DAG run exists."""

    SCHEDULED = "scheduled"
    MANUAL = "manual"
    BACKFILL = "backfill"


RUN_FINISHED: frozenset[RunState] = frozenset({RunState.SUCCESS, RunState.FAILED})

TI_FINISHED: frozenset[TIState] = frozenset(
    {TIState.SUCCESS, TIState.FAILED, TIState.UPSTREAM_FAILED, TIState.SKIPPED, TIState.REMOVED}
)
"""States a task instance stays in unless a person clears it."""

TI_ACTIVE: frozenset[TIState] = frozenset({TIState.QUEUED, TIState.RUNNING})
"""States that hold an executor slot and a pool slot."""

TI_TRANSITIONS: dict[TIState, frozenset[TIState]] = {
    TIState.PENDING: frozenset(
        {TIState.SCHEDULED, TIState.UPSTREAM_FAILED, TIState.SKIPPED, TIState.REMOVED}
    ),
    TIState.SCHEDULED: frozenset({TIState.QUEUED, TIState.PENDING}),
    # QUEUED -> SUCCESS: an outcome may arrive without its start event (a lost or late event)
    TIState.QUEUED: frozenset(
        {TIState.RUNNING, TIState.SUCCESS, TIState.FAILED, TIState.UP_FOR_RETRY}
    ),
    TIState.RUNNING: frozenset({TIState.SUCCESS, TIState.FAILED, TIState.UP_FOR_RETRY}),
    TIState.UP_FOR_RETRY: frozenset({TIState.SCHEDULED}),
    TIState.SUCCESS: frozenset(),
    TIState.FAILED: frozenset(),
    TIState.UPSTREAM_FAILED: frozenset(),
    TIState.SKIPPED: frozenset(),
    TIState.REMOVED: frozenset(),
}
"""Transitions the scheduler and workers make. Clearing (a person's action) resets to PENDING."""


def can_transition(current: TIState, new: TIState) -> bool:
    """Whether the scheduler or a worker may move a task instance from `current` to `new`."""
    return new in TI_TRANSITIONS[current]


TI_CLEARABLE: frozenset[TIState] = frozenset(set(TIState) - {TIState.PENDING, TIState.REMOVED})
"""States a person may clear back to PENDING (`store/actions.py`). PENDING is waiting already;
a REMOVED mapped placeholder is never reset: its expansion is what gets cleared."""

TI_ONLY_FAILED: frozenset[TIState] = frozenset({TIState.FAILED, TIState.UPSTREAM_FAILED})
"""What "clear only failed" selects, as in Airflow."""

TI_MARKS: frozenset[TIState] = frozenset({TIState.SUCCESS, TIState.FAILED})
"""The states a person may mark a task instance as."""

_CLEAR_OR_MARK = frozenset({TIState.PENDING, TIState.SUCCESS, TIState.FAILED})

TI_MANUAL_TRANSITIONS: dict[TIState, frozenset[TIState]] = {
    TIState.PENDING: frozenset({TIState.SUCCESS, TIState.FAILED}),
    TIState.SCHEDULED: _CLEAR_OR_MARK,
    TIState.QUEUED: _CLEAR_OR_MARK,  # fences its try
    TIState.RUNNING: _CLEAR_OR_MARK,  # fences its try
    TIState.UP_FOR_RETRY: _CLEAR_OR_MARK,
    TIState.SUCCESS: frozenset({TIState.PENDING, TIState.FAILED}),
    TIState.FAILED: frozenset({TIState.PENDING, TIState.SUCCESS}),
    TIState.UPSTREAM_FAILED: _CLEAR_OR_MARK,
    TIState.SKIPPED: _CLEAR_OR_MARK,
    TIState.REMOVED: frozenset(),
}
"""Transitions a person makes, never the scheduler: clear (-> PENDING) and mark (-> SUCCESS,
FAILED). A QUEUED or RUNNING task instance can be cleared or marked too: its try is fenced off
in the same transaction (ADR 4), so a late outcome from its worker is refused. A REMOVED
placeholder has none: clearing or marking a mapped task acts on its expansion."""

RUN_MANUAL_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.QUEUED: frozenset(),
    RunState.RUNNING: frozenset(),
    RunState.SUCCESS: frozenset({RunState.RUNNING}),
    RunState.FAILED: frozenset({RunState.RUNNING}),
}
"""A finished run whose task instances a person cleared or marked runs again (its end_date is
cleared) so the scheduler plans it and decides its outcome anew. A QUEUED run has no task
instances yet; it can be neither cleared nor marked."""


def can_transition_manually(current: TIState, new: TIState) -> bool:
    """Whether a person (clear, mark) may move a task instance from `current` to `new`."""
    return new in TI_MANUAL_TRANSITIONS[current]


@dataclass(frozen=True)
class StateChange:
    """Move one task instance from `old` to `new`; skipped if it is no longer in `old`."""

    ti_id: int
    old: TIState
    new: TIState
