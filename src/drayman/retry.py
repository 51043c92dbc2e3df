"""How long to wait before the next try of a failed task. Pure.

With backoff the wait doubles each try, "equal jitter" spreads retries of many tasks that
failed together (half the wait is fixed, half random), and `max_delay_s` caps it. The jitter
is seeded by the task instance and try, so the same inputs always give the same delay.
"""

from __future__ import annotations

import random

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
