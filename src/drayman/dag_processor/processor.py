"""The DAG processor: publishes the DAG folder as a new bundle whenever it changes.

Driven by the scheduler loop: `tick()` costs a stat walk of the folder while nothing changed.
On a change it packs the folder; a new version is extracted into the local bundle cache,
parsed in a subprocess (never here), and then stored in one transaction: the bundle, what
parsing found, and a deploy record. Running DAG runs keep the version they started with;
new runs take the new one.
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
import time
from pathlib import Path

from drayman.bundles.archive import PackedBundle, Signature, folder_signature, pack
from drayman.bundles.cache import BundleCache
from drayman.config import Settings
from drayman.dag_processor.parser import ParseResult, parse_bundle
from drayman.exceptions import BundleError
from drayman.store import bundles as bundle_store
from drayman.store.dags import record_parse
from drayman.store.engine import Store
from drayman.store.errors import is_constraint_violation

logger = logging.getLogger(__name__)

# an unchanged folder that failed to pack or parse is tried again after this long
RETRY_FAILED_S = 60.0


class DagProcessor:
    """Watches `settings.dags_folder` and publishes each new version of it."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self._settings = settings
        self._store = store
        self._cache = BundleCache(settings.bundle_cache)
        self._signature: Signature | None = None  # of the folder as last published or matched
        self._last_problem: str | None = None
        self._failed: tuple[Signature, float] | None = None  # (signature, when to retry)

    def tick(self) -> str | None:
        """Publish the folder if it changed since the last tick; the new version, or None."""
        folder = self._settings.dags_folder
        try:
            signature = folder_signature(folder)
        except BundleError as exc:
            self._problem(str(exc))
            return None
        if signature == self._signature or self._waiting_to_retry(signature):
            return None
        try:
            # the signature is taken before packing: an edit during packing shows next tick
            version = self._publish_if_new(pack(folder))
        except BundleError as exc:
            self._problem(str(exc))
            self._failed = (signature, time.monotonic() + RETRY_FAILED_S)
            return None
        self._signature = signature
        self._failed = None
        self._last_problem = None
        return version

    @property
    def problem(self) -> str | None:
        """Why the last tick published nothing (missing folder, bad symlink, ...), if it failed.

        `tick()` logs such problems instead of raising, so a scheduler keeps running; a CLI
        command can show this instead.
        """
        return self._last_problem

    def publish(self, created_by: str, source: str, *, folder: Path | None = None) -> str:
        """Publish `folder` (default: the DAG folder) even if that version is already live."""
        packed = pack(folder or self._settings.dags_folder)
        self._publish(packed, created_by=created_by, source=source)
        return packed.version

    def _publish_if_new(self, packed: PackedBundle) -> str | None:
        with self._store.read() as conn:
            if bundle_store.latest_deployed_version(conn) == packed.version:
                return None
        try:
            self._publish(packed, created_by=_whoami(), source="folder")
        except Exception as exc:
            if not is_constraint_violation(exc):
                raise
            # another processor (a second scheduler) stored the same version first
            with self._store.read() as conn:
                if bundle_store.latest_deployed_version(conn) != packed.version:
                    raise
            return None
        return packed.version

    def _publish(self, packed: PackedBundle, *, created_by: str, source: str) -> None:
        # extract and parse before the transaction: parsing may take long, and a write
        # transaction on SQLite holds the database lock
        bundle_dir = self._cache.path(packed.version, lambda: packed.archive)
        parsed = parse_bundle(
            bundle_dir,
            timeout_s=self._settings.parse_timeout_s,
            run_as_user=self._settings.run_as_user,
        )
        now = self._store.now()
        with self._store.begin() as conn:
            previous = bundle_store.latest_deployed_version(conn)
            previous_manifest = bundle_store.load_manifest(conn, previous) if previous else None
            bundle_store.save_bundle(
                conn,
                version=packed.version,
                archive=packed.archive,
                manifest=packed.manifest,
                now=now,
            )
            record_parse(
                conn, bundle_version=packed.version, dags=parsed.dags, errors=parsed.errors, now=now
            )
            bundle_store.record_deploy(
                conn,
                version=packed.version,
                previous_manifest=previous_manifest,
                manifest=packed.manifest,
                created_by=created_by,
                source=source,
                now=now,
            )
        _log_published(packed, parsed, source)

    def _waiting_to_retry(self, signature: Signature) -> bool:
        """A folder that just failed to publish is retried later, not on every tick."""
        return (
            self._failed is not None
            and self._failed[0] == signature
            and time.monotonic() < self._failed[1]
        )

    def _problem(self, message: str) -> None:
        """Log a folder problem once, not on every tick until it is fixed."""
        if message != self._last_problem:
            logger.warning("bundle.not_published error=%s", message)
            self._last_problem = message


def _log_published(packed: PackedBundle, parsed: ParseResult, source: str) -> None:
    logger.info(
        "bundle.published version=%s files=%d dags=%d errors=%d parse_s=%.2f source=%s",
        packed.version[:12],
        len(packed.manifest),
        len(parsed.dags),
        len(parsed.errors),
        parsed.duration_s,
        source,
    )
    for error in parsed.errors:
        logger.warning(
            "dag.import_error version=%s file=%s line=%s message=%s",
            packed.version[:12],
            error.fileloc,
            error.lineno if error.lineno is not None else "-",
            error.message,
        )


def _whoami() -> str:
    """user@host for the deploy record of a watched folder."""
    try:
        user = getpass.getuser()
    except Exception:  # no name for this uid (a container): KeyError or OSError by version
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"
