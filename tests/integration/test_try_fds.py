"""A try holds no file descriptor of its warm worker: not the worker's socket to the executor
(whose messages the executor unpickles), not the try's log, not another pipe. A task that
writes a hostile pickle to every socket it finds must not run code in the executor's process.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from drayman.config import Settings
from drayman.executors.local import LocalExecutor
from support.executor import VERSION, Events, outcomes, workload

ATTACK_DAG = """
import os, pickle, stat, struct
from drayman import DAG, task

MARKER = @MARKER@


class Payload:
    def __reduce__(self):
        return (open, (MARKER, "w"))


def kind(mode):
    for name in ("SOCK", "FIFO", "REG", "DIR", "CHR"):
        if getattr(stat, "S_IS" + name)(mode):
            return name
    return "other"


with DAG("ex"):

    @task
    def noop():
        names = os.listdir("/proc/self/fd")  # its own fd is closed again once it returns
        found = {}
        for name in names:
            try:
                found[int(name)] = kind(os.fstat(int(name)).st_mode)
            except OSError:
                continue
        data = pickle.dumps(Payload())
        for fd, what in found.items():
            if what == "SOCK":  # multiprocessing's framing: a 4-byte length, then the pickle
                try:
                    os.write(fd, struct.pack("!i", len(data)) + data)
                except OSError:
                    pass
        return found

    noop()
"""


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "pwned"


def started_executor(root: Path, dag_source: str, marker: Path) -> LocalExecutor:
    """A started LocalExecutor with one warm process, whose bundle VERSION (already in its
    cache) holds `dag_source` as dag.py, with `@MARKER@` naming `marker`."""
    bundle = root / "home" / "bundles" / VERSION
    bundle.mkdir(parents=True)
    (bundle / "dag.py").write_text(dag_source.replace("@MARKER@", repr(str(marker))))
    executor = LocalExecutor(Settings(home=root / "home", parallelism=1))
    executor.bundles.cached.add(VERSION)
    executor.start()
    return executor


@pytest.fixture
def executor(tmp_path: Path, marker: Path) -> Iterator[LocalExecutor]:
    executor = started_executor(tmp_path, ATTACK_DAG, marker)
    yield executor
    executor.stop(grace_s=0)


def test_a_try_sees_only_its_own_fds_and_cannot_reach_the_executor(
    executor: LocalExecutor, marker: Path
) -> None:
    seen = Events(executor)
    executor.submit([workload(1)])
    outcome = outcomes(seen.until(lambda ev: 1 in outcomes(ev)))[1]
    # a second try on the same worker: the executor still reads that worker
    executor.submit([workload(2)])
    assert outcomes(seen.until(lambda ev: 2 in outcomes(ev)))[2].succeeded

    assert not marker.exists(), "a pickle written by a task ran in the executor's process"
    assert outcome.succeeded, outcome
    assert outcome.result_json is not None
    fds = {int(fd): kind for fd, kind in json.loads(outcome.result_json).items()}
    extra = {fd: kind for fd, kind in fds.items() if fd > 2}
    # by design: the pipe the try sends its result on, and nothing else
    assert list(extra.values()) == ["FIFO"], fds
    assert {fds[0], fds[1], fds[2]} <= {"CHR", "FIFO"}, fds


TOP_LEVEL_DAG = """
import os, pickle, stat, struct
from drayman import DAG, task


class Payload:
    def __reduce__(self):
        return (open, (@MARKER@, "w"))


# Without run_as_user the warm worker imports this file, and holds its socket to the executor:
# the second lock, the executor's unpickler, must refuse what is written there.
data = pickle.dumps(Payload())
for name in os.listdir("/proc/self/fd"):
    try:
        if stat.S_ISSOCK(os.fstat(int(name)).st_mode):
            os.write(int(name), struct.pack("!i", len(data)) + data)
    except OSError:
        pass

with DAG("ex"):

    @task
    def noop():
        return 1

    noop()
"""


def test_the_executor_refuses_a_pickle_from_a_worker_and_goes_on(
    tmp_path: Path, marker: Path, caplog: pytest.LogCaptureFixture
) -> None:
    executor = started_executor(tmp_path, TOP_LEVEL_DAG, marker)
    try:
        seen = Events(executor)
        executor.submit([workload(1)])
        assert outcomes(seen.until(lambda ev: 1 in outcomes(ev)))[1].succeeded
        executor.submit([workload(2)])
        assert outcomes(seen.until(lambda ev: 2 in outcomes(ev)))[2].succeeded
    finally:
        executor.stop(grace_s=0)
    assert not marker.exists(), "a pickle written by a worker ran in the executor's process"
    assert "naming 'io.open'" in caplog.text and "refused" in caplog.text, caplog.text
