"""The executor interface: small on purpose, so that new executors (Kubernetes) can follow.

The scheduler calls `submit` with workloads it has already recorded as queued, then reads
`events()` for what it should record next. An executor whose workers write their own state to
the store (Celery) returns no events; the scheduler then learns from the store, and `fileno`
lets it sleep until either an event or its fallback poll.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from drayman.workloads import ExecutorEvent, Workload


class Executor(Protocol):
    """Runs workloads somewhere and reports what happened to them.

    Whether `open_slots()` is exact (the executor knows what it runs) or each queue's floor
    across the deployment (its workers are elsewhere) is the scheduler's `Capacity` to know
    (`drayman.scheduler.capacity`), not the executor's to say.
    """

    def start(self) -> None:
        """Acquire processes or connections; called once before the first submit."""

    def open_slots(self) -> int:
        """How many more workloads this executor will start right now."""

    def submit(self, workloads: Sequence[Workload]) -> None:
        """Start (or send) these workloads. Must not block on their running."""

    def events(self) -> list[ExecutorEvent]:
        """Everything that happened since the last call; never blocks."""

    def fileno(self) -> int | None:
        """A file descriptor that becomes readable when events wait, or None."""

    def running_try_ids(self) -> list[int]:
        """The tries this executor runs (or holds to run) in this process; [] when its workers
        are elsewhere and watch their own tries (Celery)."""

    def cancel(self, try_id: int) -> None:
        """Stop a running try (its process group is killed); its outcome is reported as failed."""

    def heartbeat(self) -> None:
        """Periodic housekeeping: restart dead worker processes, retire idle ones."""

    def stop(self, grace_s: float) -> None:
        """Stop taking work; wait up to `grace_s` for running tries, then kill them."""


class WorkerEngine(Protocol):
    """What the Celery app of `drayman worker` calls on the worker's engine
    (`drayman.worker.engine.RemoteRunner`), which the CLI builds and hands it."""

    def run_tries(self, try_ids: Sequence[int], send_again: Callable[[list[int]], None]) -> None:
        """Claim, run and record the tries of one message; return when all are over."""

    def run_callback(self, dag_id: str, run_id: str, callback: str) -> bool:
        """Run a finished run's DAG-level callback; False when it is not due."""

    def release(self) -> None:
        """Claim nothing more (the worker stops)."""

    def hand_back(self) -> None:
        """Kill the tries still running and record them as handed back."""
