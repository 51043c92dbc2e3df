"""Run conf as every entry point checks it (`drayman.conf`): JSON only, within the size and
depth caps, no NUL or lone surrogate, and plain params typed by their defaults."""

from __future__ import annotations

import copy
import json
import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drayman.conf import DEFAULT_LIMITS, ConfLimits, check_conf, parse_conf, validate_conf
from drayman.config import Settings
from drayman.exceptions import ParamsError
from drayman.spec import ParamSpec

LIMITS = ConfLimits(max_bytes=1024, max_depth=4)


def test_limits_come_from_the_settings() -> None:
    assert ConfLimits.of(Settings()) == ConfLimits(65536, 32) == DEFAULT_LIMITS
    env = {"DRAYMAN_MAX_CONF_BYTES": "100", "DRAYMAN_MAX_CONF_DEPTH": "3"}
    assert ConfLimits.of(Settings.load(env)) == ConfLimits(100, 3)


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ("{out: 1}", "conf", "conf: not valid JSON"),
        ("[1, 2]", "conf", "must be a JSON object, like .* not a JSON array"),
        ('"x"', "conf", "not a JSON string"),
        ("null", "conf", "not null"),
        ('{"a": NaN}', "conf", "NaN is not JSON"),
        ('{"a": -Infinity}', "conf", "-Infinity is not JSON"),
        ('{"a": 1e999}', "conf.a", "inf is not a JSON number"),
        ('{"a": "x\\u0000y"}', "conf.a", "NUL character .* at position 1: remove it"),
        ('{"a\\u0000": 1}', "conf", "key 'a\\\\x00' holds a NUL character"),
        ('{"a": ["\\ud800"]}', "conf.a[0]", "lone surrogate \\(\\\\ud800\\)"),
        ('{"\\udfff": 1}', "conf", "key .* holds a lone surrogate"),
        ('{"a": [[[[1]]]]}', "conf.a[0][0][0]", "deeper than 4 levels"),
        ('{"a": "' + "x" * 2000 + '"}', "conf", "bytes of JSON, over the limit of 1024"),
        ("[" * 100_000 + "]" * 100_000, "conf", "over the limit"),
    ],
)
def test_parse_conf_refuses_with_where_and_what(text: str, field: str, message: str) -> None:
    with pytest.raises(ParamsError, match=message) as caught:
        parse_conf(text, LIMITS)
    assert caught.value.field == field


def test_an_integer_python_cannot_print_is_not_valid_json() -> None:
    with pytest.raises(ParamsError, match=r"conf: not valid JSON: .*digits"):
        parse_conf('{"a": ' + "9" * 5000 + "}", ConfLimits())


def test_deep_text_is_refused_not_a_recursion_error() -> None:
    text = '{"a": ' + "[" * 50_000 + "]" * 50_000 + "}"
    with pytest.raises(ParamsError, match="deeper than 32 levels"):
        parse_conf(text, ConfLimits(max_bytes=10**6))


def test_depth_and_size_hold_at_the_limit() -> None:
    assert parse_conf('{"a": [[{"b": 1}]]}', LIMITS) == {"a": [[{"b": 1}]]}
    body = '{"a": "' + "x" * (1024 - 9) + '"}'
    assert len(body) == 1024
    assert parse_conf(body, LIMITS)["a"].startswith("x")


def test_check_conf_refuses_what_a_python_caller_could_pass() -> None:
    with pytest.raises(ParamsError, match="must be a JSON object, not a JSON array"):
        check_conf([1], LIMITS)
    with pytest.raises(ParamsError, match="keys must be strings, got 1"):
        check_conf({"a": {1: "x"}}, LIMITS)
    with pytest.raises(ParamsError, match=r"conf.a: \{1, 2\} \(set\) is not JSON data"):
        check_conf({"a": {1, 2}}, LIMITS)
    with pytest.raises(ParamsError, match="nan is not a JSON number"):
        check_conf({"a": float("nan")}, LIMITS)
    deep: Any = 1
    for _ in range(100_000):  # far deeper than Python's recursion limit
        deep = [deep]
    with pytest.raises(ParamsError, match="deeper than 4 levels"):
        check_conf({"a": deep}, LIMITS)


def test_a_long_key_does_not_make_a_long_error() -> None:
    key = "k" * 800
    with pytest.raises(ParamsError) as caught:
        check_conf({key: {key: "\x00"}}, ConfLimits())
    assert len(str(caught.value)) < 300 and caught.value.field is not None
    assert len(caught.value.field) < 130


PLAIN = {
    "rows": ParamSpec(50),
    "ratio": ParamSpec(0.5),
    "dry": ParamSpec(False),
    "out": ParamSpec("/tmp/out"),
    "ids": ParamSpec([1]),
    "opts": ParamSpec({}),
    "anything": ParamSpec(None),
}


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"rows": "many"}, "param 'rows': expected integer, got 'many'"),
        ({"rows": 1.5}, "param 'rows': expected integer"),
        ({"rows": True}, "param 'rows': expected integer"),
        ({"ratio": "1"}, "param 'ratio': expected number"),
        ({"dry": "yes"}, "param 'dry': expected boolean"),
        ({"out": 5}, "param 'out': expected string"),
        ({"ids": {}}, "param 'ids': expected array"),
        ({"opts": []}, "param 'opts': expected object"),
    ],
)
def test_a_plain_param_takes_the_type_of_its_default(conf: dict[str, Any], message: str) -> None:
    with pytest.raises(ParamsError, match=message) as caught:
        validate_conf(PLAIN, conf)
    assert caught.value.field == f"conf.{next(iter(conf))}"


def test_a_plain_param_accepts_its_type_and_null_and_a_null_default_anything() -> None:
    conf = {"rows": 7, "ratio": 2, "dry": True, "out": "x", "ids": [], "opts": {"a": 1}}
    assert validate_conf(PLAIN, {**conf, "anything": [{"x": 1}]}) == {
        **conf,
        "anything": [{"x": 1}],
    }
    assert validate_conf(PLAIN, {"rows": None})["rows"] is None


JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(st.characters(codec=None, categories=None))  # NUL and surrogates included
    | st.binary(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=4) | st.integers(), inner, max_size=4)
    ),
    max_leaves=30,
)


@given(conf=st.dictionaries(st.text(max_size=5), JSONISH, max_size=4))
def test_an_accepted_conf_can_be_stored_serialized_pickled_and_shown(conf: Any) -> None:
    limits = ConfLimits(max_bytes=4096, max_depth=5)
    try:
        check_conf(conf, limits)
    except ParamsError:
        return
    text = json.dumps(conf, allow_nan=False)  # the store and the API
    text.encode("utf-8")  # PostgreSQL text, a page
    json.dumps(conf, ensure_ascii=False).encode("utf-8")  # JSONResponse
    assert json.loads(text) == conf
    assert pickle.loads(pickle.dumps(conf)) == conf  # the broker
    assert copy.deepcopy(conf) == conf
    assert parse_conf(text, limits) == conf  # what one entry point accepts, the others do
