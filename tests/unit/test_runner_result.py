"""The pure parts of running a try: result encoding and its cap, exit descriptions, context."""

from __future__ import annotations

import json
import signal
from datetime import timedelta

import pytest

from drayman.exceptions import ResultTooLargeError
from drayman.runner.execute import context_for
from drayman.runner.results import ResultNotJSONError, encode_result, format_bytes
from drayman.runner.supervise import describe_exit
from drayman.workloads import RunContextData, TryWorkload


@pytest.mark.parametrize(
    "value",
    [None, True, 0, -3, 1.5, "héllo", [], {}, {"a": [1, 2, {"b": None}]}, ["x"] * 10],
)
def test_json_values_round_trip(value: object) -> None:
    assert json.loads(encode_result("t", value, 65536)) == value


def test_encoding_is_compact() -> None:
    assert encode_result("t", {"a": [1, 2]}, 100) == '{"a":[1,2]}'


def test_tuples_become_lists() -> None:
    assert encode_result("t", (1, 2), 100) == "[1,2]"


@pytest.mark.parametrize("value", [object(), {1, 2}, b"bytes", timedelta(1), float("nan")])
def test_values_json_cannot_carry_are_refused(value: object) -> None:
    with pytest.raises(ResultNotJSONError, match="task 'load' returned a value that is not JSON"):
        encode_result("load", value, 65536)


def test_exactly_the_cap_is_allowed_and_one_more_byte_is_not() -> None:
    text = "x" * 98  # JSON adds the two quotes
    assert len(encode_result("t", text, 100)) == 100
    with pytest.raises(ResultTooLargeError):
        encode_result("t", text + "x", 100)


def test_the_cap_counts_utf8_bytes_not_characters() -> None:
    with pytest.raises(ResultTooLargeError):
        encode_result("t", "é" * 60, 100)


def test_over_the_cap_says_what_to_do() -> None:
    with pytest.raises(ResultTooLargeError) as info:
        encode_result("x", "a" * 1_250_000, 65536)
    assert str(info.value) == (
        "task 'x' returned 1.2 MB; results are capped at 64 KB (DRAYMAN_MAX_RESULT_BYTES): "
        "write big data to storage and return its path"
    )


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 bytes"),
        (812, "812 bytes"),
        (1024, "1 KB"),
        (65536, "64 KB"),
        (1536, "1.5 KB"),
        (1_250_000, "1.2 MB"),
        (3 * 1024**2, "3 MB"),
    ],
)
def test_format_bytes(size: int, text: str) -> None:
    assert format_bytes(size) == text


def test_describe_exit() -> None:
    assert describe_exit(0) == (0, None, "exited with code 0")
    assert describe_exit(3 << 8) == (3, None, "exited with code 3")
    assert describe_exit(signal.SIGKILL) == (None, 9, "killed by signal 9 (SIGKILL)")
    assert describe_exit(signal.SIGSEGV) == (None, 11, "killed by signal 11 (SIGSEGV)")


def test_context_times_are_aware_in_the_dag_timezone() -> None:
    run = RunContextData(
        dag_id="d",
        run_id="r",
        run_type="scheduled",
        logical_date="2024-07-01T22:00:00+00:00",
        data_interval_start="2024-06-30T22:00:00+00:00",
        data_interval_end="2024-07-01T22:00:00+00:00",
        timezone="America/New_York",
        bundle_version="v",
        params={"p": 1},
        conf={"c": 2},
    )
    workload = TryWorkload(
        try_id=1, ti_id=1, task_id="t", map_index=4, try_number=2, max_tries=3, fileloc="f", run=run
    )
    ctx = context_for(workload)
    assert ctx.ts == "2024-07-01T18:00:00-04:00"
    assert ctx.ds == "2024-07-01"
    assert ctx.data_interval_start.utcoffset() == timedelta(hours=-4)
    assert (ctx.task_id, ctx.map_index, ctx.try_number, ctx.max_tries) == ("t", 4, 2, 3)
    assert (ctx.params, ctx.conf) == ({"p": 1}, {"c": 2})
