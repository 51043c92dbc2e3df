"""The bench's one error: a benchmark could not be run or did not finish."""

from __future__ import annotations


class BenchError(Exception):
    """A benchmark could not be run or did not finish: the message says which and why."""
