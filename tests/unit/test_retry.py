from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from drayman.retry import DEFAULT_MAX_DELAY_S, RetryDecision, decide_retry, retry_delay_s
from drayman.states import TIState

ENDED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def delay(
    try_number: int,
    *,
    delay_s: float = 10.0,
    backoff: bool = True,
    max_delay_s: float | None = None,
    seed: int = 0,
) -> float:
    return retry_delay_s(
        try_number=try_number,
        delay_s=delay_s,
        backoff=backoff,
        max_delay_s=max_delay_s,
        seed=seed,
    )


@pytest.mark.parametrize("try_number", [1, 2, 5, 30])
def test_without_backoff_every_try_waits_the_fixed_delay(try_number: int) -> None:
    assert delay(try_number, delay_s=42.0, backoff=False) == 42.0


def test_without_backoff_the_delay_is_still_capped() -> None:
    assert delay(1, delay_s=600.0, backoff=False, max_delay_s=60.0) == 60.0


def test_without_a_cap_the_default_cap_of_one_day_applies() -> None:
    assert DEFAULT_MAX_DELAY_S == 24 * 3600.0
    assert delay(1, delay_s=10 * 24 * 3600.0, backoff=False) == DEFAULT_MAX_DELAY_S
    assert delay(40, delay_s=10.0) <= DEFAULT_MAX_DELAY_S


@pytest.mark.parametrize("try_number", range(1, 11))
@pytest.mark.parametrize("seed", [0, 1, 7, 123_456])
def test_backoff_doubles_each_try_within_equal_jitter_bounds(try_number: int, seed: int) -> None:
    base = 10.0 * 2 ** (try_number - 1)

    result = delay(try_number, delay_s=10.0, seed=seed, max_delay_s=10**9)

    assert base / 2 <= result <= base


def test_backoff_grows_from_try_to_try() -> None:
    # each try's lower bound is the previous try's upper bound
    delays = [delay(n, seed=3, max_delay_s=10**9) for n in range(1, 12)]

    assert delays == sorted(delays)
    assert delays[-1] >= 10.0 * 2**10 / 2


@pytest.mark.parametrize("try_number", [5, 8, 20])
def test_backoff_is_capped_by_max_delay(try_number: int) -> None:
    result = delay(try_number, delay_s=10.0, max_delay_s=60.0, seed=try_number)

    # the cap applies before the jitter: spread over [cap/2, cap], never above the cap
    assert 30.0 <= result <= 60.0


def test_same_inputs_give_the_same_delay() -> None:
    first = [delay(n, seed=99) for n in range(1, 8)]
    second = [delay(n, seed=99) for n in range(1, 8)]

    assert first == second


def test_different_seeds_spread_the_retries_of_tasks_that_failed_together() -> None:
    delays = [delay(4, delay_s=10.0, seed=seed) for seed in range(50)]

    assert len(set(delays)) == 50
    assert min(delays) < 50.0 < max(delays)  # both halves of [40, 80] are used


@pytest.mark.parametrize("try_number", [0, -1, -100])
def test_try_numbers_start_at_one(try_number: int) -> None:
    with pytest.raises(ValueError, match=rf"try_number starts at 1, got {try_number}"):
        delay(try_number)


@pytest.mark.parametrize("try_number", [64, 1_000, 10**9, 10**18])
@pytest.mark.parametrize("max_delay_s", [None, 3600.0])
def test_huge_try_numbers_do_not_overflow(try_number: int, max_delay_s: float | None) -> None:
    cap = DEFAULT_MAX_DELAY_S if max_delay_s is None else max_delay_s

    result = delay(try_number, delay_s=300.0, max_delay_s=max_delay_s)

    assert math.isfinite(result)
    assert cap / 2 <= result <= cap


def test_a_huge_delay_with_a_huge_try_number_stays_finite() -> None:
    result = delay(10**6, delay_s=1e300, max_delay_s=120.0)

    assert 60.0 <= result <= 120.0


@pytest.mark.parametrize(("try_number", "max_tries"), [(1, 2), (1, 5), (4, 5)])
def test_a_failed_try_with_tries_left_waits_the_given_delay(
    try_number: int, max_tries: int
) -> None:
    decision = decide_retry(
        try_number=try_number, max_tries=max_tries, ended_at=ENDED, delay_s=42.5
    )

    assert decision == RetryDecision(TIState.UP_FOR_RETRY, ENDED + timedelta(seconds=42.5))


@pytest.mark.parametrize(("try_number", "max_tries"), [(1, 1), (3, 3), (4, 3)])
def test_the_last_try_failing_fails_the_task_instance(try_number: int, max_tries: int) -> None:
    # no delay is needed, so none need be given
    decision = decide_retry(
        try_number=try_number, max_tries=max_tries, ended_at=ENDED, delay_s=None
    )

    assert decision == RetryDecision(TIState.FAILED, None)


@pytest.mark.parametrize("try_number", [1, 3])
def test_a_handed_back_try_is_retried_at_once_even_when_it_was_the_last(try_number: int) -> None:
    decision = decide_retry(
        try_number=try_number, max_tries=3, ended_at=ENDED, delay_s=None, handed_back=True
    )

    assert decision == RetryDecision(TIState.UP_FOR_RETRY, ENDED)


def test_a_retry_without_a_delay_is_refused_rather_than_guessed() -> None:
    with pytest.raises(ValueError, match="try 1 of 3 failed and may be retried"):
        decide_retry(try_number=1, max_tries=3, ended_at=ENDED, delay_s=None)


def test_a_zero_delay_retries_when_the_try_ended() -> None:
    decision = decide_retry(try_number=1, max_tries=2, ended_at=ENDED, delay_s=0.0)

    assert decision == RetryDecision(TIState.UP_FOR_RETRY, ENDED)
