"""Whether a task may start, given the states of its upstream task instances. Pure.

The rules and their meaning follow Airflow's, so DAGs port over unchanged:

| rule        | ready when                             | gives up as                          |
| ----------- | -------------------------------------- | ------------------------------------ |
| all_success | every upstream succeeded               | upstream_failed (or skipped)         |
| all_failed  | every upstream failed                  | skipped once one succeeded           |
| all_done    | every upstream finished, however       | never                                |
| one_success | one upstream succeeded                 | upstream_failed when none can        |
| one_failed  | one upstream failed                    | skipped when none did                |
| none_failed | every upstream finished, none failed   | upstream_failed                      |
| always      | at once, without waiting               | never                                |
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from enum import Enum

from drayman.states import TIState


class Verdict(Enum):
    WAIT = "wait"
    READY = "ready"
    UPSTREAM_FAILED = "upstream_failed"
    SKIPPED = "skipped"


_RULES = frozenset(
    {"all_success", "all_failed", "all_done", "one_success", "one_failed", "none_failed", "always"}
)
_FAILED = {TIState.FAILED, TIState.UPSTREAM_FAILED}
_DONE = {TIState.SUCCESS, TIState.FAILED, TIState.UPSTREAM_FAILED, TIState.SKIPPED}


def evaluate(rule: str, upstream_states: Iterable[TIState]) -> Verdict:
    """The verdict for one task instance whose upstream task instances are in these states.

    REMOVED upstream instances (mapped placeholders) do not count. No upstream at all: ready.
    """
    if rule not in _RULES:  # checked first: a typo must fail even on a task with no upstream
        raise ValueError(f"unknown trigger rule {rule!r}")
    states: list[TIState] = [s for s in upstream_states if s != TIState.REMOVED]
    if rule == "always" or not states:
        return Verdict.READY
    counts = Counter(states)
    total = len(states)
    done = sum(counts[s] for s in _DONE)
    failed = sum(counts[s] for s in _FAILED)
    success = counts[TIState.SUCCESS]
    skipped = counts[TIState.SKIPPED]
    all_done = done == total
    if rule == "all_success":
        if failed:
            return Verdict.UPSTREAM_FAILED
        if skipped:
            return Verdict.SKIPPED
        return Verdict.READY if success == total else Verdict.WAIT
    if rule == "all_failed":
        if success or skipped:
            return Verdict.SKIPPED
        return Verdict.READY if failed == total else Verdict.WAIT
    if rule == "all_done":
        return Verdict.READY if all_done else Verdict.WAIT
    if rule == "one_success":
        if success:
            return Verdict.READY
        if not all_done:
            return Verdict.WAIT
        return Verdict.SKIPPED if skipped == total else Verdict.UPSTREAM_FAILED
    if rule == "one_failed":
        if failed:
            return Verdict.READY
        return Verdict.SKIPPED if all_done else Verdict.WAIT
    if rule == "none_failed":
        if failed:
            return Verdict.UPSTREAM_FAILED
        return Verdict.READY if all_done else Verdict.WAIT
    raise ValueError(f"unknown trigger rule {rule!r}")
