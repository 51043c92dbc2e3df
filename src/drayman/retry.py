"""Whether a failed try is tried again, and how long to wait before the next one. Pure.

The store records outcomes but knows no DAG: whoever records a failure computes its task's
delay with `retry_delay_s` (from the task's spec) and hands it to the store as a value; the
store applies `decide_retry` to the task instance it holds locked (ADR 16: a question asked
across layers gets a value, not a callback).

With backoff the wait doubles each try, "equal jitter" spreads retries of many tasks that
failed together (half the wait is fixed, half random), and `max_delay_s` caps it. The jitter
is seeded by the task instance and try, so the same inputs always give the same delay.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import NamedTuple

from drayman.states import TIState

DEFAULT_MAX_DELAY_S = 24 * 3600.0


def retry_delay_s(
    *,
    try_number: int,
    delay_s: float,
    backoff: bool,
    max_delay_s: float | None,
    seed: int = 0,
) -> float:
    """Seconds to wait after failed try `try_number` (1-based) before the next one starts."""
    if try_number < 1:
        raise ValueError(f"try_number starts at 1, got {try_number}")
    cap = DEFAULT_MAX_DELAY_S if max_delay_s is None else max_delay_s
    if not backoff:
        return min(delay_s, cap)
    exponent = min(try_number - 1, 62)  # 2**62 seconds is already past any cap
    base = min(delay_s * (2.0**exponent), cap)
    jitter = random.Random(seed * 1_000_003 + try_number).uniform(0, base / 2)
    return min(base / 2 + jitter, cap)


class RetryDecision(NamedTuple):
    """What a failed try does to its task instance: retried (when) or failed for good."""

    state: TIState  # UP_FOR_RETRY or FAILED
    next_retry_at: datetime | None


def decide_retry(
    *,
    try_number: int,
    max_tries: int,
    ended_at: datetime,
    delay_s: float | None,
    handed_back: bool = False,
) -> RetryDecision:
    """The fate of the task instance whose try `try_number` (of `max_tries`) failed at `ended_at`.

    A try handed back by a stopping worker is retried at once (it did not use up a retry);
    otherwise a try is left when `try_number < max_tries`, and it waits `delay_s`, which the
    caller must then give (ValueError when it did not: the wait would be a guess).
    """
    if handed_back:
        return RetryDecision(TIState.UP_FOR_RETRY, ended_at)
    if try_number >= max_tries:
        return RetryDecision(TIState.FAILED, None)
    if delay_s is None:
        raise ValueError(
            f"try {try_number} of {max_tries} failed and may be retried, but no retry delay "
            "was given for it"
        )
    return RetryDecision(TIState.UP_FOR_RETRY, ended_at + timedelta(seconds=delay_s))
