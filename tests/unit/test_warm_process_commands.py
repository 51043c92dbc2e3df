"""A warm process obeys its owner's commands (`runner.protocol`), and a pool's owner never
imports the authoring API."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
from pathlib import Path

from drayman.config import Settings
from drayman.runner.protocol import Cancel, Kill, Stop
from drayman.runner.supervise import StopTry
from drayman.runner.worker import Worker


def _worker(tmp_path: Path) -> tuple[Worker, multiprocessing.connection.Connection]:
    ours, theirs = multiprocessing.Pipe()
    return Worker(theirs, Settings(home=tmp_path)), ours


def test_a_cancel_stops_only_the_try_it_names(tmp_path: Path) -> None:
    worker, owner = _worker(tmp_path)
    worker.running = 7
    owner.send(Cancel(8))
    assert worker._check_message() is None
    owner.send(Cancel(7))
    assert worker._check_message() == StopTry("cancelled")
    assert not worker.stopping


def test_kill_stops_at_once_and_stop_lets_the_workload_end(tmp_path: Path) -> None:
    worker, owner = _worker(tmp_path)
    owner.send(Stop())
    assert worker._check_message() is None
    assert worker.stopping
    worker, owner = _worker(tmp_path)
    owner.send(Kill())
    assert worker._check_message() == StopTry("killed: the executor is stopping", at_once=True)
    assert worker.stopping


def test_an_idle_worker_exits_on_stop(tmp_path: Path) -> None:
    worker, owner = _worker(tmp_path)
    owner.send(Stop())
    assert worker._next_workload() is None


def _owner_killed_with_a_message_unread(owner: multiprocessing.connection.Connection) -> None:
    """What `kill -9` of the pool's owner leaves: a socket whose reads fail with ECONNRESET
    (not EOF), because what the warm process had sent was never read."""
    owner.close()


def test_an_owner_killed_with_messages_unread_stops_the_try_at_once(tmp_path: Path) -> None:
    worker, owner = _worker(tmp_path)
    worker.send(Stop())  # e.g. a TryStarted the owner died before reading
    _owner_killed_with_a_message_unread(owner)
    assert worker._check_message() == StopTry("the executor went away", at_once=True)
    assert worker.stopping


def test_an_idle_worker_whose_owner_was_killed_exits_quietly(tmp_path: Path) -> None:
    worker, owner = _worker(tmp_path)
    worker.send(Stop())
    _owner_killed_with_a_message_unread(owner)
    assert worker._next_workload() is None


def test_the_owners_of_pools_never_import_the_authoring_api() -> None:
    code = (
        "import sys, drayman.executors.local, drayman.worker.engine, drayman.scheduler.loop\n"
        "print(sorted(m for m in sys.modules if m.startswith('drayman.authoring')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
