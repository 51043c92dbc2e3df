"""Run conf checked against a DAG's declared params. Pure: the scheduler, the CLI and the
API call it on stored `ParamSpec`s without importing any user code.

A param is *required* when its effective value (the conf's, else the default) must not be
None. That lets a scheduled run, which has no conf, use the default of a required param.
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from typing import Any

from drayman.exceptions import ParamsError
from drayman.spec import ParamSpec

PARAM_TYPES: tuple[str, ...] = ("string", "integer", "number", "boolean", "array", "object")


def validate_conf(params: Mapping[str, ParamSpec], conf: Mapping[str, Any]) -> dict[str, Any]:
    """The effective params of a run: each default, overridden by the conf's value if given.

    Conf keys that are not params are allowed and ignored here (they stay in the run's conf).
    Raises ParamsError naming the key, the expected type and the value it got.
    """
    if not isinstance(conf, Mapping):
        raise ParamsError(f"run conf must be a JSON object, got {type(conf).__name__}")
    effective: dict[str, Any] = {}
    for name, spec in params.items():
        value = conf.get(name, spec.default)
        if value is None and spec.required:
            raise ParamsError(f"param {name!r} is required: give it a value in the run conf")
        problem = type_problem(spec.type, value)
        if problem:
            raise ParamsError(f"param {name!r}: {problem}")
        effective[name] = value
    return effective


def type_problem(expected: str | None, value: Any) -> str | None:
    """Why `value` does not fit `expected`, or None when it does (None fits every type)."""
    if expected is None or value is None or _fits(expected, value):
        return None
    return f"expected {expected}, got {reprlib.repr(value)} ({type(value).__name__})"


def _fits(expected: str, value: Any) -> bool:
    # bool is a subclass of int in Python, but True is not an integer in JSON schema.
    if isinstance(value, bool):
        return expected == "boolean"
    if expected == "integer":
        return isinstance(value, int)
    if expected == "number":
        return isinstance(value, int | float)
    if expected == "string":
        return isinstance(value, str)
    if expected == "array":
        return isinstance(value, list)
    if expected == "object":
        return isinstance(value, dict)
    return False
