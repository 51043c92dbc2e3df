"""Waiting on a condition instead of sleeping a fixed time: a test moves on the moment what it
awaits holds, and fails naming what never came."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout_s: float,
    what: str,
    *,
    last: Callable[[], str] = lambda: "",
    interval_s: float = 0.05,
) -> T:
    """Call `predicate` until it returns something truthy, and return that.

    Fails after `timeout_s` with a message naming `what` was awaited and showing `last()` (the
    last output or state seen). The timeout is a bound for a loaded machine, not a speed
    check: a test passes as soon as the condition holds.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            shown = last()
            pytest.fail(
                f"timed out after {timeout_s:g} s waiting for {what}"
                + (f"\nlast seen:\n{shown}" if shown else "")
            )
        time.sleep(interval_s)
