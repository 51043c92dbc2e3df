"""Trigger rules, checked against Airflow's semantics (the table in drayman/trigger_rules.py)."""

from __future__ import annotations

import pytest

from drayman.spec import TRIGGER_RULES
from drayman.states import TIState
from drayman.trigger_rules import Verdict, evaluate

P = TIState.PENDING
SCH = TIState.SCHEDULED
Q = TIState.QUEUED
R = TIState.RUNNING
S = TIState.SUCCESS
F = TIState.FAILED
RETRY = TIState.UP_FOR_RETRY
UF = TIState.UPSTREAM_FAILED
K = TIState.SKIPPED
X = TIState.REMOVED

WAIT = Verdict.WAIT
READY = Verdict.READY
UPSTREAM_FAILED = Verdict.UPSTREAM_FAILED
SKIPPED = Verdict.SKIPPED

CASES = [
    # rule, upstream states, verdict, id
    ("all_success", [S, S, S], READY, "all succeeded"),
    ("all_success", [S, R], WAIT, "one still running"),
    ("all_success", [S, RETRY], WAIT, "one up for retry is not done"),
    ("all_success", [P, SCH, Q], WAIT, "none started"),
    ("all_success", [S, F], UPSTREAM_FAILED, "one failed"),
    ("all_success", [S, UF], UPSTREAM_FAILED, "one upstream_failed"),
    ("all_success", [R, F], UPSTREAM_FAILED, "gives up at once, without waiting"),
    ("all_success", [S, K], SKIPPED, "one skipped"),
    ("all_success", [K, F], UPSTREAM_FAILED, "failure wins over skip"),
    ("all_failed", [F, UF], READY, "failed and upstream_failed both count"),
    ("all_failed", [F, R], WAIT, "one still running"),
    ("all_failed", [F, RETRY], WAIT, "one up for retry may still succeed"),
    ("all_failed", [F, S], SKIPPED, "one succeeded"),
    ("all_failed", [F, K], SKIPPED, "one skipped"),
    ("all_failed", [R, S], SKIPPED, "gives up once one succeeded, without waiting"),
    ("all_done", [S, F, UF, K], READY, "every finished state"),
    ("all_done", [S, R], WAIT, "one still running"),
    ("all_done", [F, RETRY], WAIT, "one up for retry"),
    ("all_done", [F, F], READY, "all failed"),
    ("one_success", [S, R], READY, "does not wait for the others"),
    ("one_success", [F, S], READY, "one success among failures"),
    ("one_success", [F, R], WAIT, "another may still succeed"),
    ("one_success", [F, K], UPSTREAM_FAILED, "all done, none succeeded"),
    ("one_success", [F, UF], UPSTREAM_FAILED, "all failed"),
    ("one_success", [K, K], SKIPPED, "all skipped"),
    ("one_failed", [F, R], READY, "does not wait for the others"),
    ("one_failed", [UF, R], READY, "upstream_failed counts as failed"),
    ("one_failed", [S, R], WAIT, "another may still fail"),
    ("one_failed", [S, RETRY], WAIT, "up for retry may still fail"),
    ("one_failed", [S, K], SKIPPED, "all done, none failed"),
    ("none_failed", [S, K], READY, "success and skip"),
    ("none_failed", [K, K], READY, "all skipped"),
    ("none_failed", [S, R], WAIT, "one still running"),
    ("none_failed", [F, S], UPSTREAM_FAILED, "one failed"),
    ("none_failed", [UF, R], UPSTREAM_FAILED, "one upstream_failed, without waiting"),
    ("always", [F, R], READY, "failed and running"),
    ("always", [P, Q], READY, "nothing started"),
    ("always", [UF, K], READY, "upstream_failed and skipped"),
]


@pytest.mark.parametrize(
    ("rule", "upstream", "expected"),
    [pytest.param(rule, ups, verdict, id=f"{rule}: {why}") for rule, ups, verdict, why in CASES],
)
def test_verdict(rule: str, upstream: list[TIState], expected: Verdict) -> None:
    assert evaluate(rule, upstream) is expected


def test_every_rule_has_a_case() -> None:
    assert {rule for rule, *_ in CASES} == TRIGGER_RULES


@pytest.mark.parametrize("rule", sorted(TRIGGER_RULES))
def test_no_upstream_is_ready(rule: str) -> None:
    assert evaluate(rule, []) is READY


@pytest.mark.parametrize(
    ("rule", "upstream", "expected"),
    [
        pytest.param("all_success", [S, X], READY, id="all_success: removed does not count"),
        pytest.param("all_success", [X], READY, id="all_success: only removed = no upstream"),
        pytest.param("all_failed", [F, X], READY, id="all_failed: removed is not a success"),
        pytest.param("one_success", [F, X], UPSTREAM_FAILED, id="one_success: removed ignored"),
        pytest.param("one_failed", [S, X], SKIPPED, id="one_failed: removed is not a failure"),
        pytest.param("none_failed", [K, X], READY, id="none_failed: removed ignored"),
        pytest.param("all_done", [R, X], WAIT, id="all_done: removed does not finish it"),
    ],
)
def test_removed_upstream_instances_are_ignored(
    rule: str, upstream: list[TIState], expected: Verdict
) -> None:
    assert evaluate(rule, upstream) is expected


def test_upstream_states_may_be_any_iterable() -> None:
    assert evaluate("all_success", (s for s in [S, S])) is READY


@pytest.mark.parametrize("upstream", [[], [S], [F, R]], ids=["no upstream", "success", "mixed"])
def test_an_unknown_rule_raises_naming_it(upstream: list[TIState]) -> None:
    with pytest.raises(ValueError, match="unknown trigger rule 'all_sucess'"):
        evaluate("all_sucess", upstream)
