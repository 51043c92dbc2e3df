"""The local executor: the scheduler's tries run in warm processes on this machine.

A thin adapter of the warm-process pool (`drayman.runner.pool`) to the executor interface
(`drayman.executors.base`). What it adds: it puts each bundle version in the cache before a
warm process needs it, as warm processes hold no database password to fetch one.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

from drayman.config import Settings
from drayman.runner.archives import BundlePrefetch, fetch_archive
from drayman.runner.pool import WarmPool
from drayman.workloads import CallbackDone, ExecutorEvent, LogChunks, Workload

log = logging.getLogger("drayman.executors.local")


class LocalExecutor:
    """Runs workloads in warm local processes; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        echo_logs: bool = False,
        min_warm: int = 2,
        relay: bool = False,
    ) -> None:
        self.settings = settings
        self.pool = WarmPool(settings, echo_logs=echo_logs, min_warm=min_warm, relay=relay)
        load = functools.partial(fetch_archive, settings)
        self.bundles = BundlePrefetch(settings.bundle_cache, load, log)

    def start(self) -> None:
        self.pool.start()

    def open_slots(self) -> int:
        return self.pool.open_slots()

    def submit(self, workloads: Sequence[Workload]) -> None:
        self.pool.check_running()
        self.bundles.ensure(workloads)
        self.pool.submit(workloads)

    def events(self) -> list[ExecutorEvent]:
        return self.pool.events()

    def fileno(self) -> int | None:
        return self.pool.fileno()

    def relayed(self) -> list[LogChunks | CallbackDone]:
        """With `relay`: log chunks and ended callbacks since the last call (after `events()`)."""
        return self.pool.relayed()

    def running_try_ids(self) -> list[int]:
        return self.pool.running_try_ids()

    def cancel(self, try_id: int) -> None:
        self.pool.cancel(try_id)

    def heartbeat(self) -> None:
        self.pool.heartbeat()

    def stop(self, grace_s: float) -> None:
        """See the protocol; tries still waiting for a worker are reported failed."""
        self.pool.stop(grace_s)
