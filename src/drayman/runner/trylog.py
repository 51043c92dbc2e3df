"""One try's log file: the task's output and drayman's own lines about the try, in one file.

drayman appends to it everything the try's process group writes to fd 1 and 2 (subprocesses
included), and lines of its own, prefixed `[drayman]`, that say where the try ran and how it
ended. For `drayman dags test` the same text is mirrored to the terminal. A log's path, relative
to the logs folder, comes with the workload or is derived from the try's identity, so it is the
same on every worker.

A `LogSink` (optional) gets the same bytes as the file: a remote worker ships the log to the
database with it (`drayman.runner.logship.PipeLogSink`), so the log can be read from any host
while the try runs and after the worker is gone. Local tries have none and pay nothing for it.
"""

from __future__ import annotations

import codecs
import os
from pathlib import Path
from typing import Protocol, TextIO

from drayman.workloads import CallbackWorkload, TryWorkload, log_relpath


class LogSink(Protocol):
    """Somewhere a try's log goes besides its file. Its methods must never raise.

    The process that supervises the try calls `flush()` once `time.monotonic()` has reached
    `due()` (None: nothing is waiting), even while the task writes nothing; `close()` is the
    last flush, when the try's log is closed.
    """

    def write(self, data: bytes) -> None: ...

    def due(self) -> float | None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class TryLog:
    """One try's log file, appended to; mirrored to `echo` and copied to `sink` when given."""

    def __init__(self, path: Path, echo: TextIO | None = None, sink: LogSink | None = None) -> None:
        self.path = path
        self._sink = sink
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        try:
            self._fd = os.open(path, flags, 0o644)
        except FileNotFoundError:  # a new task's folder: creating it only then saves syscalls
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, flags, 0o644)
        self._echo = echo
        # Output arrives in arbitrary chunks: a UTF-8 character may straddle two of them.
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace") if echo else None

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        if self._sink is not None:
            self._sink.write(data)
        if self._echo is not None and self._decoder is not None:
            self._echo.write(self._decoder.decode(data))
            self._echo.flush()

    def line(self, text: str) -> None:
        """One of drayman's own lines, set apart from the task's output by its prefix."""
        self.write(f"[drayman] {text}\n".encode())

    def flush_due(self) -> float | None:
        """When (`time.monotonic()`) the sink wants `flush()`; None when it needs nothing."""
        return None if self._sink is None else self._sink.due()

    def flush(self) -> None:
        if self._sink is not None:
            self._sink.flush()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._sink is not None:
            sink, self._sink = self._sink, None
            sink.close()


def try_log_path(workload: TryWorkload) -> str:
    """Where a try's log goes, relative to the logs folder."""
    return workload.log_path or _default_log_path(workload)


def _default_log_path(workload: TryWorkload) -> str:
    run = workload.run
    return log_relpath(
        run.dag_id, run.run_id, workload.task_id, workload.map_index, workload.try_number
    )


def default_callback_log_path(workload: CallbackWorkload) -> str:
    run_folder = Path(log_relpath(workload.run.dag_id, workload.run.run_id, "x", -1, 1)).parent
    return str(run_folder.parent / f"dag_{workload.callback}.log")
