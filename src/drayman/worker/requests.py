"""What a Celery thread hands the worker's engine, and how the engine answers it.

A Celery thread posts a request and waits on its future; the engine's pump thread settles
the future when the try (or callback) is over, released, or will never run here.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

from drayman.workloads import CallbackWorkload, TryOutcome, TryWorkload


class EngineDied(Exception):
    """The worker's engine thread ended on an error: this worker runs and records nothing more."""


class Released(Exception):
    """This worker let a try go unclaimed (no free slot for `worker_hold_s`, or it is
    stopping): the try is still QUEUED, for another worker once its id is sent again."""

    def __init__(self, try_id: int) -> None:
        super().__init__(f"try {try_id} released unclaimed")
        self.try_id = try_id


@dataclass
class TryRequest:
    """A try id a message named, waiting to be claimed."""

    try_id: int
    done: Future[TryOutcome | None]
    arrived: float = field(default_factory=time.monotonic)


@dataclass
class CallbackRequest:
    """A DAG-level callback, claimed already, waiting to run."""

    workload: CallbackWorkload
    done: Future[bool]


@dataclass
class Running:
    """A claimed try, running in a warm process; `done` gets its outcome."""

    workload: TryWorkload
    done: Future[TryOutcome | None]


@dataclass(frozen=True)
class Signals:
    """How the engine's front reaches its pump thread."""

    inbox: queue.SimpleQueue[TryRequest | CallbackRequest]
    wake_fd: int  # readable when the front posted something or set an event
    release: threading.Event  # claim nothing more
    hand_back: threading.Event  # kill the running tries; record them handed back
    stop: threading.Event  # shut down after this round


def answer(
    done: Future[Any], *, result: object = None, exception: BaseException | None = None
) -> None:
    """Settle `done` unless it already is (a request may be answered twice as the engine dies)."""
    with contextlib.suppress(InvalidStateError):
        if exception is not None:
            done.set_exception(exception)
        else:
            done.set_result(result)
