"""Run one try, or one DAG-level callback, on a remote worker that was sent only ids.

A broker message names a try id (or a run and a callback name) and nothing else. The worker
rebuilds the workload from the store with the scheduler's own code (`scheduler.dispatch`),
claims the try by recording its start in its own transaction, runs it in a forked child
like the local executor does, and records the outcome, fenced by the try id (ADR 4). A
redelivered, stale or forged message finds nothing to claim and runs nothing.

No Celery here: the Celery task body (`drayman.executors.celery`) calls these functions.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from drayman.bundles.cache import BundleCache
from drayman.config import Settings
from drayman.runner.execute import fail_try, hostname, run_callback_workload, run_try
from drayman.runner.logship import LogShipper
from drayman.scheduler import dispatch
from drayman.spec import DagSpec
from drayman.store import dags as dag_store
from drayman.store import tries as try_store
from drayman.store.bundles import load_archive
from drayman.store.engine import Store
from drayman.workloads import TryOutcome, TryStarted, TryWorkload

log = logging.getLogger("drayman.worker")


class SpecCache:
    """Serialized DAGs by (dag_id, bundle version): a version never changes, so never stale."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._specs: dict[tuple[str, str], DagSpec] = {}

    def __call__(self, dag_id: str, version: str) -> DagSpec:
        key = (dag_id, version)
        spec = self._specs.get(key)
        if spec is None:
            with self.store.read() as conn:
                spec = self._specs[key] = dag_store.load_spec(conn, dag_id, version)
        return spec


def run_remote_try(
    settings: Settings,
    store: Store,
    try_id: int,
    *,
    worker_id: int | None,
    cache: BundleCache,
    specs: Callable[[str, str], DagSpec] | None = None,
) -> TryOutcome | None:
    """Run try `try_id` if it is still queued and current; its outcome, or None if fenced."""
    spec_of = specs or SpecCache(store)
    # read and claim in one transaction: one round trip less on every try's path
    with store.begin() as conn:
        workload = dispatch.workload_for_try(conn, try_id, spec_of)
        if workload is not None:
            claim = TryStarted(try_id, hostname(), os.getpid(), datetime.now(UTC))
            claimed = try_store.record_started(conn, claim, worker_id=worker_id)
    if workload is None:
        log.warning("try.fenced try_id=%s: not a queued current try; nothing run", try_id)
        return None
    if not claimed:
        log.warning("try.fenced try_id=%s: claimed by another delivery; nothing run", try_id)
        return None
    log.info("task.started try_id=%s ti=%s task=%s", try_id, workload.ti_id, workload.task_id)
    outcome = _execute(settings, store, workload, cache)
    with store.begin() as conn:
        recorded = try_store.record_outcome(
            conn,
            outcome,
            retry_delay_s=lambda ti: dispatch.task_retry_delay_s(
                spec_of(workload.run.dag_id, workload.run.bundle_version), ti
            ),
        )
    if recorded is None:
        log.warning("try.fenced try_id=%s: outcome refused, try is no longer current", try_id)
    else:
        log.info("task.finished try_id=%s state=%s", try_id, recorded.state)
    return outcome


def run_remote_callback(
    settings: Settings,
    store: Store,
    dag_id: str,
    run_id: str,
    callback: str,
    *,
    cache: BundleCache,
    specs: Callable[[str, str], DagSpec] | None = None,
) -> bool:
    """Run a finished run's DAG-level callback; False when the store says there is none."""
    spec_of = specs or SpecCache(store)
    with store.read() as conn:
        workload = dispatch.callback_for_run(conn, dag_id, run_id, callback, spec_of)
    if workload is None:
        log.warning(
            "callback.refused dag=%s run=%s callback=%s: no such finished run or callback",
            dag_id,
            run_id,
            callback,
        )
        return False
    bundle_dir = _bundle_dir(store, cache, workload.run.bundle_version)
    run_callback_workload(workload, bundle_dir, settings.logs_folder)
    return True


def _execute(
    settings: Settings, store: Store, workload: TryWorkload, cache: BundleCache
) -> TryOutcome:
    def started(_event: TryStarted) -> None:
        """The start is already recorded (the claim); the outcome brings the child's pid."""

    try:
        bundle_dir = _bundle_dir(store, cache, workload.run.bundle_version)
    except Exception as exc:
        return fail_try(
            workload,
            settings.logs_folder,
            exc,
            on_started=started,
            log_sink=LogShipper(store, workload.try_id),
        )
    try:
        # the log is shipped to the store as it is written: readable from any host, while the
        # try runs and after this worker is gone; the outcome is recorded after the last chunk
        return run_try(
            workload,
            bundle_dir,
            settings.logs_folder,
            max_result_bytes=settings.max_result_bytes,
            on_started=started,
            log_sink=LogShipper(store, workload.try_id),
        )
    except Exception as exc:  # the log cannot be written, or a bug of ours: still an outcome
        now = datetime.now(UTC)
        error = f"the worker could not run the try: {type(exc).__name__}: {exc}"
        return TryOutcome(workload.try_id, False, now, now, hostname=hostname(), error=error)


def _bundle_dir(store: Store, cache: BundleCache, version: str) -> Path:
    def fetch() -> bytes:
        with store.read() as conn:
            return load_archive(conn, version)

    return cache.path(version, fetch)
