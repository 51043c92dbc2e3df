"""The transitions a person makes by hand (clear, mark), kept apart from the scheduler's."""

from __future__ import annotations

import pytest

from drayman.states import (
    RUN_FINISHED,
    RUN_MANUAL_TRANSITIONS,
    TI_ACTIVE,
    TI_CLEARABLE,
    TI_MANUAL_TRANSITIONS,
    TI_MARKS,
    TI_ONLY_FAILED,
    TI_TRANSITIONS,
    RunState,
    TIState,
    can_transition,
    can_transition_manually,
)


def test_every_state_has_a_manual_transitions_entry() -> None:
    assert set(TI_MANUAL_TRANSITIONS) == set(TIState)
    assert set(RUN_MANUAL_TRANSITIONS) == set(RunState)


def test_manual_transitions_only_clear_or_mark_and_never_stay_put() -> None:
    for state, targets in TI_MANUAL_TRANSITIONS.items():
        assert targets <= {TIState.PENDING} | TI_MARKS, state
        assert state not in targets, state


@pytest.mark.parametrize("state", sorted(TI_CLEARABLE))
def test_clearable_states_can_go_back_to_pending(state: TIState) -> None:
    assert can_transition_manually(state, TIState.PENDING)


@pytest.mark.parametrize("state", sorted(set(TIState) - {TIState.REMOVED}))
def test_everything_but_a_removed_placeholder_can_be_marked(state: TIState) -> None:
    assert all(can_transition_manually(state, mark) for mark in TI_MARKS - {state})


def test_a_removed_placeholder_is_never_touched_by_hand() -> None:
    assert TI_MANUAL_TRANSITIONS[TIState.REMOVED] == frozenset()
    assert TIState.REMOVED not in TI_CLEARABLE


def test_clearing_finished_and_active_task_instances_is_for_people_only() -> None:
    """The scheduler never moves a task instance back: only a person does (fencing the try
    of an active one)."""
    for state in TI_ACTIVE | {TIState.SUCCESS, TIState.FAILED}:
        assert not can_transition(state, TIState.PENDING), state
        assert can_transition_manually(state, TIState.PENDING), state
    assert TI_TRANSITIONS[TIState.FAILED] == frozenset()


def test_only_failed_selects_failed_and_upstream_failed() -> None:
    assert frozenset({TIState.FAILED, TIState.UPSTREAM_FAILED}) == TI_ONLY_FAILED
    assert TI_ONLY_FAILED <= TI_CLEARABLE


def test_only_a_finished_run_is_reopened() -> None:
    for state, targets in RUN_MANUAL_TRANSITIONS.items():
        assert targets == (frozenset({RunState.RUNNING}) if state in RUN_FINISHED else frozenset())
