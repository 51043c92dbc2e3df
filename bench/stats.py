"""Statistics over measured times: percentiles, the sustained start rate, rounded seconds."""

from __future__ import annotations

from datetime import datetime, timedelta


def sustained_rate(starts: list[datetime]) -> float:
    """Tries started per second between the 5th and the 95th percentile start (the ramp-up
    and the tail left out); for a handful of tries, first to last start."""
    ordered = sorted(starts)
    if len(ordered) < 2:
        return 0.0
    low, high = (int(len(ordered) * 0.05), int(len(ordered) * 0.95) - 1)
    if len(ordered) < 40:
        low, high = 0, len(ordered) - 1
    span = (ordered[high] - ordered[low]).total_seconds()
    return (high - low) / span if span > 0 else 0.0


def seconds(delta: timedelta) -> float:
    return round(delta.total_seconds(), 4)


def percentile(values: list[float], pct: float) -> float:
    """The `pct` percentile of `values`, linearly interpolated (numpy's default)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
