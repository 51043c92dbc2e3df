"""A local cache of extracted bundles, keyed by version, shared by every process on a host.

A bundle version never changes content, so a cached copy never goes stale: `root/<version>`
either exists complete or not at all. Each miss extracts into a private temporary directory
beside it and renames it into place; rename is atomic, so concurrent processes either win the
race or find the winner's copy, and a crash leaves only a hidden temporary directory behind.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from drayman.bundles.extract import unpack
from drayman.exceptions import BundleError

_VERSION = re.compile(r"[0-9a-f]{64}")


class BundleCache:
    """Extracted bundles under `root`, fetched on a miss."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def has(self, version: str) -> bool:
        """Whether `version` is already extracted here."""
        return self._final(version).is_dir()

    def path(self, version: str, fetch: Callable[[], bytes]) -> Path:
        """The directory holding bundle `version`; `fetch()` gives its archive on a miss."""
        final = self._final(version)
        if final.is_dir():
            return final
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{version[:12]}-", dir=self.root))
        try:
            # the archive's content is checked against `version` before anything is written
            unpack(fetch(), staging, version)
            _publish(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return final

    def _final(self, version: str) -> Path:
        # the version becomes a path: anything but 64 hex could climb out of the cache
        if not _VERSION.fullmatch(version):
            raise BundleError(f"{version!r} is not a bundle version (64 lowercase hex digits)")
        return self.root / version


def _publish(staging: Path, final: Path) -> None:
    try:
        os.rename(staging, final)
    except OSError:
        if not final.is_dir():  # not a lost race: a real failure
            raise
