"""Driving an executor directly, the way the scheduler does: try workloads for a DAG file in a
bundle of version `VERSION`, and the events given back."""

from __future__ import annotations

import select
import time
from collections.abc import Callable

from drayman.executors.base import Executor
from drayman.workloads import (
    ExecutorEvent,
    RunContextData,
    TryOutcome,
    TryStarted,
    TryWorkload,
    log_relpath,
)

VERSION = "c0ffee" + "0" * 58


def workload(try_id: int, task_id: str = "noop", **params: object) -> TryWorkload:
    run = RunContextData(
        dag_id="ex",
        run_id=f"manual__{try_id}",
        run_type="manual",
        logical_date="2024-01-01T00:00:00+00:00",
        data_interval_start="2024-01-01T00:00:00+00:00",
        data_interval_end="2024-01-01T00:00:00+00:00",
        timezone="UTC",
        bundle_version=VERSION,
        params=dict(params),
    )
    return TryWorkload(
        try_id=try_id,
        ti_id=try_id,
        task_id=task_id,
        map_index=-1,
        try_number=1,
        max_tries=1,
        fileloc="dag.py",
        run=run,
        log_path=log_relpath("ex", run.run_id, task_id, -1, 1),
    )


class Events:
    """Every event an executor has given so far, read the way the scheduler reads them."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.all: list[ExecutorEvent] = []

    def until(
        self, done: Callable[[list[ExecutorEvent]], bool], timeout_s: float = 10.0
    ) -> list[ExecutorEvent]:
        deadline = time.monotonic() + timeout_s
        fd = self.executor.fileno()
        assert fd is not None
        while not done(self.all):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"timed out; events so far: {self.all}"
            select.select([fd], [], [], remaining)
            self.all += self.executor.events()
        return self.all


def outcomes(events: list[ExecutorEvent]) -> dict[int, TryOutcome]:
    return {e.try_id: e for e in events if isinstance(e, TryOutcome)}


def started(events: list[ExecutorEvent]) -> dict[int, TryStarted]:
    return {e.try_id: e for e in events if isinstance(e, TryStarted)}
