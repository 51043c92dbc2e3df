"""The protocol between a warm process (`drayman.runner.worker`) and the pool that owns it.

Messages from the owner (`ToWarmProcess`): a workload (`TryWorkload` or `CallbackWorkload`,
pickled whole: cheaper than `asdict` and back), `Cancel` (SIGTERM, then SIGKILL after a
grace), `Kill` (SIGKILL at once to whatever runs, callbacks too: the owner is stopping) and
`Stop`. Messages back (`FROM_WARM_PROCESS`): `TryStarted`, then `WorkerDone` (with the try's
`TryOutcome`) once the workload and its callbacks are over; a try whose callbacks run sends
its outcome before them.
With `relay` (a remote worker's engine), the try's log also goes back as `LogChunks`, its
last ones inside the `WorkerDone`.

Messages are plain pickles (`encode`, then `send_bytes`): multiprocessing's own `send`
builds a `ForkingPickler`, copying its reducer table, for every message. The owner reads
them with a restricted unpickler (`drayman.runner.unpickler`).

The owner reaches the warm process only by its module's name (`enter_warm_process`), so a
process that owns a pool never imports the authoring API or user code.
"""

from __future__ import annotations

import importlib
import pickle
from dataclasses import dataclass
from typing import Any

from drayman.runner.preload import WARM_PROCESS_MODULE
from drayman.workloads import CallbackWorkload, LogChunks, TryOutcome, TryStarted, TryWorkload


@dataclass(frozen=True)
class Cancel:
    """Stop the try `try_id` if it still runs (SIGTERM, then SIGKILL after its grace)."""

    try_id: int


@dataclass(frozen=True)
class Kill:
    """SIGKILL whatever runs now, callbacks too, report it, and exit: the owner is stopping."""


@dataclass(frozen=True)
class Stop:
    """Exit once the workload that runs now (if any) is over; take no more."""


@dataclass(frozen=True)
class WorkerDone:
    """The worker finished its workload; `retiring`: it exits now and takes no more.

    `outcome` is the try's, unless it was sent on its own before the task's callbacks ran:
    one message, so the owner learns the outcome and the free slot at the same moment.
    """

    retiring: bool = False
    outcome: TryOutcome | None = None
    chunks: LogChunks | None = None  # with relay: the try's last log chunks


ToWarmProcess = TryWorkload | CallbackWorkload | Cancel | Kill | Stop

# What a warm process sends: the only classes its owner's unpickler accepts, with what they
# hold (`drayman.runner.unpickler`).
FROM_WARM_PROCESS: tuple[type, ...] = (TryStarted, TryOutcome, LogChunks, WorkerDone)


def encode(message: object) -> bytes:
    """A message as it goes over the connection: a plain pickle (see the module docstring)."""
    return pickle.dumps(message, pickle.HIGHEST_PROTOCOL)


def enter_warm_process(*args: Any) -> None:
    """The target of a warm process: its `main`, found by name in the forkserver's child."""
    importlib.import_module(WARM_PROCESS_MODULE).main(*args)
