"""The worker engine's run cache reads only the runs it has not seen, and stays bounded."""

from __future__ import annotations

from typing import Any

import pytest

from drayman.store import caches

NO_CONN: Any = None  # the patched query never uses it


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """Every `runs_by_id` call's ids; each run's row is its id (the cache never looks inside)."""
    calls: list[list[int]] = []

    def runs_by_id(_conn: Any, run_ids: list[int]) -> dict[int, Any]:
        calls.append(sorted(run_ids))
        return {run_id: run_id for run_id in run_ids if run_id > 0}  # <= 0: no such run

    monkeypatch.setattr(caches.dispatch, "runs_by_id", runs_by_id)
    return calls


def test_reads_only_runs_not_seen(reads: list[list[int]]) -> None:
    cache = caches.RunCache()
    assert cache.rows(NO_CONN, [1, 2]) == {1: 1, 2: 2}
    assert cache.rows(NO_CONN, [2, 3, 3]) == {2: 2, 3: 3}
    assert cache.rows(NO_CONN, [1, 3]) == {1: 1, 3: 3}
    assert reads == [[1, 2], [3]]


def test_a_missing_run_is_left_out_and_asked_again(reads: list[list[int]]) -> None:
    cache = caches.RunCache()
    assert cache.rows(NO_CONN, [0, 1]) == {1: 1}
    assert cache.rows(NO_CONN, [0]) == {}
    assert reads == [[0, 1], [0]]


def test_stays_within_its_size(reads: list[list[int]]) -> None:
    cache = caches.RunCache(size=2)
    cache.rows(NO_CONN, [1, 2])
    assert cache.rows(NO_CONN, [3]) == {3: 3}
    assert cache.rows(NO_CONN, [1]) == {1: 1}
    assert reads == [[1, 2], [3], [1]]
