"""The executor reads a worker's messages with an unpickler that knows only the protocol."""

from __future__ import annotations

import os
import pickle
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drayman.runner.protocol import WorkerDone
from drayman.runner.unpickler import RefusedMessage, decode
from drayman.workloads import LogChunks, TryOutcome, TryStarted

NOW = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "message",
    [
        TryStarted(1, "host", 42, NOW),
        TryOutcome(1, True, NOW, NOW, result_json='{"a": [1, 2]}'),
        LogChunks(1, 0, ("line\n", "more\n")),
        WorkerDone(True, TryOutcome(2, False, NOW, NOW, error="boom"), LogChunks(2, 3, ())),
        "stop",
        {"a": [1, (2, 3)], "b": {4}, "c": frozenset({5}), "d": b"x", "e": None, "f": 1.5},
    ],
)
def test_the_protocol_messages_come_through_unchanged(message: object) -> None:
    assert decode(pickle.dumps(message, pickle.HIGHEST_PROTOCOL)) == message


class _Touch:
    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


class _System:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("true",))


def test_a_pickle_that_calls_a_function_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(RefusedMessage, match=r"naming 'io\.open'.*refused"):
        decode(pickle.dumps(_Touch(marker)))
    assert not marker.exists()
    with pytest.raises(RefusedMessage, match=r"naming 'posix\.system'"):
        decode(pickle.dumps(_System()))


def test_any_class_outside_the_protocol_is_refused() -> None:
    with pytest.raises(RefusedMessage, match=r"naming 'pathlib\.PosixPath'"):
        decode(pickle.dumps(Path("/etc")))


def test_a_long_name_is_cut_in_the_error() -> None:
    data = b"\x80\x04\x8c\x01m\x8c" + bytes([250]) + b"x" * 250 + b"\x93."
    with pytest.raises(RefusedMessage) as caught:
        decode(data)
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize("data", [b"", b"garbage", pickle.dumps(TryStarted(1, "h", 2, NOW))[:-5]])
def test_garbage_is_refused_with_a_clear_error(data: bytes) -> None:
    with pytest.raises(RefusedMessage, match=r"not a valid message"):
        decode(data)
