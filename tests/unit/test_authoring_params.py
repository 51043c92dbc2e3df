"""Params: declared in a DAG, checked against a run's conf without any user code."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drayman import Param
from drayman.authoring.params import PARAM_TYPES, param_spec, validate_conf
from drayman.exceptions import ParamsError
from drayman.spec import ParamSpec

PARAMS = {
    "out": ParamSpec(default="/tmp/out"),
    "limit": ParamSpec(default=10, type="integer", description="max rows"),
    "ratio": ParamSpec(default=0.5, type="number"),
    "dry_run": ParamSpec(default=False, type="boolean"),
    "ids": ParamSpec(default=[], type="array"),
    "opts": ParamSpec(default={}, type="object"),
    "name": ParamSpec(default="x", type="string"),
}


def test_defaults_when_conf_is_empty() -> None:
    assert validate_conf(PARAMS, {}) == {
        "out": "/tmp/out",
        "limit": 10,
        "ratio": 0.5,
        "dry_run": False,
        "ids": [],
        "opts": {},
        "name": "x",
    }


def test_conf_overrides_known_params_and_unknown_keys_are_ignored() -> None:
    effective = validate_conf(PARAMS, {"limit": 3, "ratio": 2, "other": "kept in conf"})
    assert effective["limit"] == 3
    assert effective["ratio"] == 2  # an integer is a number
    assert "other" not in effective


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"limit": "ten"}, "param 'limit': expected integer, got 'ten' \\(str\\)"),
        ({"limit": True}, "param 'limit': expected integer, got True \\(bool\\)"),
        ({"limit": 1.5}, "param 'limit': expected integer, got 1.5 \\(float\\)"),
        ({"ratio": "1"}, "param 'ratio': expected number, got '1' \\(str\\)"),
        ({"ratio": False}, "param 'ratio': expected number, got False \\(bool\\)"),
        ({"dry_run": 1}, "param 'dry_run': expected boolean, got 1 \\(int\\)"),
        ({"ids": {"a": 1}}, "param 'ids': expected array, got {'a': 1} \\(dict\\)"),
        ({"opts": [1]}, "param 'opts': expected object, got \\[1\\] \\(list\\)"),
        ({"name": 5}, "param 'name': expected string, got 5 \\(int\\)"),
    ],
)
def test_type_errors_name_key_type_and_value(conf: dict[str, Any], message: str) -> None:
    with pytest.raises(ParamsError, match=message):
        validate_conf(PARAMS, conf)


def test_required_param() -> None:
    params = {"day": ParamSpec(type="string", required=True)}
    with pytest.raises(ParamsError, match="param 'day' is required"):
        validate_conf(params, {})
    with pytest.raises(ParamsError, match="param 'day' is required"):
        validate_conf(params, {"day": None})
    assert validate_conf(params, {"day": "2026-01-01"}) == {"day": "2026-01-01"}
    # A default satisfies `required`, so scheduled runs (no conf) still work.
    assert validate_conf({"day": ParamSpec("x", required=True)}, {}) == {"day": "x"}


def test_optional_param_may_be_none() -> None:
    assert validate_conf({"n": ParamSpec(type="integer")}, {}) == {"n": None}


def test_conf_must_be_an_object() -> None:
    with pytest.raises(ParamsError, match="run conf must be a JSON object, got list"):
        validate_conf(PARAMS, [])  # type: ignore[arg-type]


def test_param_spec_from_param_and_plain_value() -> None:
    assert param_spec("n", Param(10, type="integer", description="rows", required=True)) == (
        ParamSpec(10, "integer", "rows", True)
    )
    assert param_spec("out", ("a", "b")) == ParamSpec(["a", "b"])
    assert param_spec("n", ParamSpec(1, "integer")) == ParamSpec(1, "integer")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (Param(1, type="int"), "unknown type 'int'"),
        (Param("1", type="integer"), "default: expected integer, got '1'"),
        (Param(float("inf")), "is not JSON data"),
        ({1, 2}, "is not JSON data"),
    ],
)
def test_param_spec_errors(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        param_spec("p", value)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(kind=st.sampled_from(PARAM_TYPES), value=JSON_VALUES)
def test_a_value_is_accepted_exactly_when_it_has_the_type(kind: str, value: Any) -> None:
    fits = (
        value is None
        or {
            "string": isinstance(value, str),
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, int | float) and not isinstance(value, bool),
            "boolean": isinstance(value, bool),
            "array": isinstance(value, list),
            "object": isinstance(value, dict),
        }[kind]
    )
    params = {"p": ParamSpec(type=kind)}
    if fits:
        assert validate_conf(params, {"p": value}) == {"p": value}
    else:
        with pytest.raises(ParamsError, match=f"param 'p': expected {kind}"):
            validate_conf(params, {"p": value})
