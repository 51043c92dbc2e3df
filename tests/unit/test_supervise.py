"""`supervise` leaves no child behind, whatever ends its watch.

A try is forked a moment before its owner (the scheduler or `drayman worker`) is killed: the
child may not have reached `setsid()` yet, so it has no process group of its own to kill.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from drayman.runner.process import Child
from drayman.runner.supervise import Interrupt, StopTry, supervise
from drayman.runner.trylog import TryLog


def _child_still_in_our_group(marker: Path) -> Child:
    """A forked child that never calls setsid(): it sleeps, then writes `marker`."""
    out_r, out_w = os.pipe()
    result_r, result_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            time.sleep(5)
            marker.write_text("survived")
        finally:
            os._exit(0)
    os.close(out_w)
    os.close(result_w)
    os.set_blocking(out_r, False)
    os.set_blocking(result_r, False)
    return Child(pid, os.pidfd_open(pid), out_r, result_r)


def _readable_at_once() -> int:
    read_end, write_end = os.pipe()
    os.write(write_end, b"x")
    os.close(write_end)
    return read_end


def test_a_child_without_its_own_group_dies_when_the_watch_fails(tmp_path: Path) -> None:
    marker = tmp_path / "survived"
    child = _child_still_in_our_group(marker)

    def owner_gone() -> StopTry | None:
        raise ConnectionResetError(104, "Connection reset by peer")

    fd = _readable_at_once()
    try:
        with pytest.raises(ConnectionResetError):
            supervise(child, TryLog(tmp_path / "try.log"), None, Interrupt(fd, owner_gone))
    finally:
        os.close(fd)
    # supervise reaped the child before it returned: had it not been killed, it had slept on
    assert not marker.exists(), "the child outlived its supervision"


def test_a_child_without_its_own_group_dies_when_stopped_at_once(tmp_path: Path) -> None:
    marker = tmp_path / "survived"
    child = _child_still_in_our_group(marker)
    fd = _readable_at_once()
    try:
        ended = supervise(
            child,
            TryLog(tmp_path / "try.log"),
            None,
            Interrupt(fd, lambda: StopTry("the executor went away", at_once=True)),
        )
    finally:
        os.close(fd)
    assert ended.interrupted == "the executor went away"
    assert os.WIFSIGNALED(ended.status) and os.WTERMSIG(ended.status) == 9, ended
    assert not marker.exists()
