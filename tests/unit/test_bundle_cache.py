from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from drayman.bundles.archive import PackedBundle, pack
from drayman.bundles.cache import BundleCache
from drayman.exceptions import BundleError


@pytest.fixture
def bundle(tmp_path: Path) -> PackedBundle:
    src = tmp_path / "src"
    (src / "etl").mkdir(parents=True)
    (src / "sales.py").write_text("X = 1\n")
    (src / "etl" / "helpers.py").write_text("Y = 2\n")
    return pack(src)


class Fetcher:
    """Counts calls, so a test can tell a hit from a miss."""

    def __init__(self, archive: bytes) -> None:
        self.archive = archive
        self.calls = 0

    def __call__(self) -> bytes:
        self.calls += 1
        return self.archive


def test_miss_fetches_and_extracts_then_hits(bundle: PackedBundle, tmp_path: Path) -> None:
    cache = BundleCache(tmp_path / "cache")
    fetch = Fetcher(bundle.archive)
    assert not cache.has(bundle.version)

    first = cache.path(bundle.version, fetch)
    second = cache.path(bundle.version, fetch)

    assert first == second == tmp_path / "cache" / bundle.version
    assert (first / "etl" / "helpers.py").read_text() == "Y = 2\n"
    assert fetch.calls == 1
    assert cache.has(bundle.version)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [bundle.version]


def test_a_version_that_is_not_a_hash_is_refused(tmp_path: Path) -> None:
    cache = BundleCache(tmp_path / "cache")
    fetch = Fetcher(b"")

    for version in ["../../etc", "ABC", "a" * 63]:
        with pytest.raises(BundleError, match="is not a bundle version"):
            cache.path(version, fetch)
        with pytest.raises(BundleError, match="is not a bundle version"):
            cache.has(version)
    assert fetch.calls == 0


def test_an_archive_with_other_content_is_refused(bundle: PackedBundle, tmp_path: Path) -> None:
    cache = BundleCache(tmp_path / "cache")
    wrong_version = "0" * 64

    with pytest.raises(BundleError, match="inconsistent"):
        cache.path(wrong_version, Fetcher(bundle.archive))

    assert not cache.has(wrong_version)
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_failed_fetch_leaves_nothing_behind(bundle: PackedBundle, tmp_path: Path) -> None:
    cache = BundleCache(tmp_path / "cache")

    def broken() -> bytes:
        raise BundleError("bundle store unreachable")

    with pytest.raises(BundleError, match="unreachable"):
        cache.path(bundle.version, broken)
    assert list((tmp_path / "cache").iterdir()) == []


def test_losing_the_race_uses_the_winners_copy(bundle: PackedBundle, tmp_path: Path) -> None:
    cache = BundleCache(tmp_path / "cache")
    rival = BundleCache(tmp_path / "cache")

    def fetch_while_a_rival_wins() -> bytes:
        rival.path(bundle.version, Fetcher(bundle.archive))
        return bundle.archive

    path = cache.path(bundle.version, fetch_while_a_rival_wins)

    assert (path / "sales.py").read_text() == "X = 1\n"
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [bundle.version]


def test_many_concurrent_misses_agree(bundle: PackedBundle, tmp_path: Path) -> None:
    workers = 8
    barrier = threading.Barrier(workers)

    def fetch() -> bytes:
        barrier.wait(timeout=10)  # every caller misses before anyone renames
        return bundle.archive

    def get(_: int) -> Path:
        return BundleCache(tmp_path / "cache").path(bundle.version, fetch)

    with ThreadPoolExecutor(workers) as pool:
        paths = set(pool.map(get, range(workers)))

    assert paths == {tmp_path / "cache" / bundle.version}
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [bundle.version]
    assert pack(tmp_path / "cache" / bundle.version).version == bundle.version
