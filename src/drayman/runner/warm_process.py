"""One warm process as its pool sees it: the process, its connection, what it runs now.

Starting, killing and closing one live here; which process gets which workload is the
pool's business (`drayman.runner.pool`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from typing import Any

from drayman.runner.protocol import enter_warm_process
from drayman.workloads import TryStarted, TryWorkload, Workload


@dataclass
class WarmProcess:
    key: int
    process: BaseProcess
    conn: Connection
    workload: Workload | None = None
    started: TryStarted | None = None  # of the running try, once the worker said so
    outcome_sent: bool = False
    idle_since: float = field(default_factory=time.monotonic)
    retiring: bool = False  # told to exit, or said it will: never given work again

    @property
    def busy(self) -> bool:
        return self.workload is not None

    @property
    def try_id(self) -> int | None:
        """The try it runs, if its workload is a try (not a callback)."""
        return try_id_of(self.workload)


def try_id_of(workload: Workload | None) -> int | None:
    return workload.try_id if isinstance(workload, TryWorkload) else None


def start_warm_process(mp: ForkServerContext, key: int, args: tuple[Any, ...]) -> WarmProcess:
    """Fork a warm process from the forkserver; `args` go to its `main` after the connection."""
    ours, theirs = mp.Pipe()
    process = mp.Process(
        target=enter_warm_process,
        args=(theirs, *args),
        name=f"drayman-worker-{key}",
        daemon=True,  # never outlives the pool's owner, even when stop() was not called
    )
    try:
        with _main_module_hidden():
            process.start()
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return WarmProcess(key, process, ours)


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Keep multiprocessing from importing the program's `__main__` again in every worker.

    It does so for spawn and forkserver children, to find functions defined in the main
    script. Ours live in drayman.runner.worker, and for the `drayman` CLI the main script
    would load click, SQLAlchemy and the web app into every worker: time, and unshared memory.
    """
    main = sys.modules.get("__main__")
    saved = dict(main.__dict__) if main is not None else {}
    if main is not None:
        main.__dict__.pop("__file__", None)
        main.__spec__ = None
    try:
        yield
    finally:
        if main is not None:
            for key in ("__file__", "__spec__"):
                if key in saved:
                    main.__dict__[key] = saved[key]


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def kill_warm_process(worker: WarmProcess) -> None:
    """SIGKILL the process and the try it runs (whose process group outlives it)."""
    if worker.started is not None:
        kill_group(worker.started.pid)
    with contextlib.suppress(ValueError):  # already closed
        worker.process.kill()


def close_warm_process(worker: WarmProcess) -> None:
    """Reap a process that exited (or kill it) and free its connection and handle."""
    worker.conn.close()
    worker.process.join(timeout=1.0)
    if worker.process.exitcode is None:
        worker.process.kill()
        worker.process.join()
    worker.process.close()
