from __future__ import annotations

import dataclasses

import pytest

from drayman.states import (
    RUN_FINISHED,
    TI_ACTIVE,
    TI_FINISHED,
    TI_TRANSITIONS,
    RunState,
    StateChange,
    TIState,
    can_transition,
)

UNFINISHED = sorted(set(TIState) - TI_FINISHED)


def test_every_state_has_a_transitions_entry() -> None:
    assert set(TI_TRANSITIONS) == set(TIState)


def test_transitions_lead_only_to_known_states_and_never_to_themselves() -> None:
    for state, targets in TI_TRANSITIONS.items():
        assert targets <= set(TIState), state
        assert state not in targets, state


@pytest.mark.parametrize("state", sorted(TI_FINISHED))
def test_finished_states_have_no_outgoing_transitions(state: TIState) -> None:
    assert TI_TRANSITIONS[state] == frozenset()
    assert not any(can_transition(state, new) for new in TIState)


@pytest.mark.parametrize("state", UNFINISHED)
def test_unfinished_states_are_no_dead_end(state: TIState) -> None:
    """From every unfinished state some path leads to a finished one."""
    seen, frontier = {state}, [state]
    while frontier:
        for new in TI_TRANSITIONS[frontier.pop()]:
            if new not in seen:
                seen.add(new)
                frontier.append(new)
    assert seen & TI_FINISHED


def test_every_state_is_reachable_from_pending() -> None:
    seen, frontier = {TIState.PENDING}, [TIState.PENDING]
    while frontier:
        for new in TI_TRANSITIONS[frontier.pop()]:
            if new not in seen:
                seen.add(new)
                frontier.append(new)
    assert seen == set(TIState)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (TIState.PENDING, TIState.SCHEDULED),
        (TIState.PENDING, TIState.UPSTREAM_FAILED),
        (TIState.PENDING, TIState.SKIPPED),
        (TIState.PENDING, TIState.REMOVED),  # a mapped placeholder expanded
        (TIState.SCHEDULED, TIState.QUEUED),
        (TIState.QUEUED, TIState.RUNNING),
        # an outcome may arrive without its start event (lost, or a very short task)
        (TIState.QUEUED, TIState.SUCCESS),
        (TIState.QUEUED, TIState.FAILED),
        (TIState.QUEUED, TIState.UP_FOR_RETRY),  # its worker died before it started
        (TIState.RUNNING, TIState.SUCCESS),
        (TIState.RUNNING, TIState.FAILED),
        (TIState.RUNNING, TIState.UP_FOR_RETRY),
        (TIState.UP_FOR_RETRY, TIState.SCHEDULED),
    ],
    ids=lambda state: str(state),
)
def test_allowed_transitions(current: TIState, new: TIState) -> None:
    assert can_transition(current, new)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (TIState.PENDING, TIState.RUNNING),  # must be scheduled and queued first
        (TIState.PENDING, TIState.SUCCESS),
        (TIState.SCHEDULED, TIState.RUNNING),
        (TIState.UP_FOR_RETRY, TIState.RUNNING),  # a retry is scheduled again, then queued
        (TIState.SUCCESS, TIState.RUNNING),  # a finished task never runs twice
        (TIState.FAILED, TIState.UP_FOR_RETRY),
        (TIState.REMOVED, TIState.SCHEDULED),
    ],
    ids=lambda state: str(state),
)
def test_forbidden_transitions(current: TIState, new: TIState) -> None:
    assert not can_transition(current, new)


def test_active_states_hold_slots_and_are_unfinished() -> None:
    assert frozenset({TIState.QUEUED, TIState.RUNNING}) == TI_ACTIVE
    assert not TI_ACTIVE & TI_FINISHED


def test_up_for_retry_is_not_finished() -> None:
    assert TIState.UP_FOR_RETRY not in TI_FINISHED


def test_finished_runs() -> None:
    assert frozenset({RunState.SUCCESS, RunState.FAILED}) == RUN_FINISHED


def test_states_are_their_stored_strings() -> None:
    assert TIState("up_for_retry") is TIState.UP_FOR_RETRY
    assert str(TIState.UPSTREAM_FAILED) == "upstream_failed"
    assert f"{RunState.RUNNING}" == "running"


def test_state_change_is_immutable() -> None:
    change = StateChange(1, TIState.PENDING, TIState.SCHEDULED)

    with pytest.raises(dataclasses.FrozenInstanceError):
        change.new = TIState.SKIPPED  # type: ignore[misc]
