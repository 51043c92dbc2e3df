"""Run conf: what a trigger may carry, and how it is checked against a DAG's declared params.

Pure: the CLI, the pages and the API call it on stored `ParamSpec`s (through
`run_creation.trigger`, which reads the DagSpec from the store) without importing any user
code. Every entry point runs the same three checks before anything is committed:

1. `parse_conf` (text from the CLI or a form): JSON only, no NaN or Infinity, size first;
2. `check_conf` (any conf, also the API's parsed body): an object of JSON data, at most
   `max_bytes` as compact JSON and `max_depth` levels deep, no NUL or lone surrogate in any
   key or string. A conf that passes can always be stored, serialized, pickled and shown;
3. `validate_conf`: each param's value against its type, the declared one or, for a plain
   param (`params={"rows": 50}`), the type of its default.

A param is *required* when its effective value (the conf's, else the default) must not be
None. That lets a scheduled run, which has no conf, use the default of a required param.
"""

from __future__ import annotations

import json
import math
import re
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from drayman.exceptions import ParamsError
from drayman.spec import ParamSpec

if TYPE_CHECKING:
    from drayman.config import Settings

PARAM_TYPES: tuple[str, ...] = ("string", "integer", "number", "boolean", "array", "object")

_UNSAFE_CHARACTER = re.compile("[\x00\ud800-\udfff]")


@dataclass(frozen=True)
class ConfLimits:
    """How large and how deep a run conf may be (`DRAYMAN_MAX_CONF_BYTES`, `..._DEPTH`)."""

    max_bytes: int = 65536
    max_depth: int = 32

    @classmethod
    def of(cls, settings: Settings) -> ConfLimits:
        return cls(settings.max_conf_bytes, settings.max_conf_depth)


DEFAULT_LIMITS = ConfLimits()  # the settings' defaults, for callers without settings (tests)


def parse_conf(text: str, limits: ConfLimits, where: str = "conf") -> dict[str, Any]:
    """The conf a JSON text means, checked by `check_conf`; ParamsError says what is wrong."""
    value = parse_json(text, limits, where)
    if not isinstance(value, dict):
        raise ParamsError(
            f'{where}: must be a JSON object, like {{"key": "value"}}, not {_json_name(value)}',
            field=where,
        )
    check_conf(value, limits, where)
    return value


def parse_json(text: str, limits: ConfLimits, where: str) -> Any:
    """Any JSON value (one form field of a conf), within the size cap, without NaN or
    Infinity, and never a RecursionError: ParamsError says what is wrong."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limits.max_bytes:
        raise ParamsError(_too_large(where, size, limits), field=where)
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ParamsError(_too_deep(where, limits), field=where) from None
    except ValueError as exc:  # JSONDecodeError, or an integer of over 4300 digits
        raise ParamsError(f"{where}: not valid JSON: {exc}", field=where) from None


def check_conf(conf: object, limits: ConfLimits, where: str = "conf") -> None:
    """Refuse a conf that could not be stored, serialized, pickled or shown safely.

    Walks the value without recursion, so a conf nested far too deep is refused here rather
    than by a RecursionError somewhere later.
    """
    if not isinstance(conf, Mapping):
        raise ParamsError(f"{where}: must be a JSON object, not {_json_name(conf)}", field=where)
    stack: list[tuple[str, object, int]] = [(where, conf, 1)]
    while stack:
        path, value, depth = stack.pop()
        if isinstance(value, Mapping | list):
            if depth > limits.max_depth:
                raise ParamsError(_too_deep(_short(path), limits), field=_short(path))
            stack.extend(_children(path, value, depth))
        else:
            _check_scalar(_short(path), value)
    size = len(json.dumps(conf, ensure_ascii=False, separators=(",", ":")).encode())
    if size > limits.max_bytes:
        raise ParamsError(_too_large(where, size, limits), field=where)


def _children(path: str, value: Mapping[Any, Any] | list[Any], depth: int) -> list[Any]:
    if isinstance(value, list):
        return [(f"{path}[{index}]", item, depth + 1) for index, item in enumerate(value)]
    children = []
    for key, item in value.items():
        if not isinstance(key, str):
            raise ParamsError(
                f"{_short(path)}: keys must be strings, got {reprlib.repr(key)}",
                field=_short(path),
            )
        problem = _string_problem(key)
        if problem:
            raise ParamsError(
                f"{_short(path)}: key {reprlib.repr(key)} {problem}", field=_short(path)
            )
        children.append((f"{path}.{key}", item, depth + 1))
    return children


def _short(path: str, keep: int = 120) -> str:
    """A location short enough for one error line (keys may be long)."""
    return path if len(path) <= keep else f"{path[: keep // 2]}...{path[-keep // 2 :]}"


def _check_scalar(path: str, value: object) -> None:
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ParamsError(
                f"{path}: {value} is not a JSON number (JSON has no NaN or Infinity); "
                "use null or a string",
                field=path,
            )
        return
    if isinstance(value, str):
        problem = _string_problem(value)
        if problem:
            raise ParamsError(f"{path}: the string {problem}", field=path)
        return
    raise ParamsError(
        f"{path}: {reprlib.repr(value)} ({type(value).__name__}) is not JSON data", field=path
    )


def _string_problem(text: str) -> str | None:
    found = _UNSAFE_CHARACTER.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return f"holds a NUL character (\\u0000) at position {found.start()}: remove it"
    return (
        f"holds a lone surrogate (\\u{ord(found.group()):04x}) at position {found.start()}, "
        "which is not text: send valid UTF-8"
    )


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (JSON has no NaN or Infinity); use null or a string")


def _too_large(where: str, size: int, limits: ConfLimits) -> str:
    return (
        f"{where}: {size} bytes of JSON, over the limit of {limits.max_bytes} "
        "(DRAYMAN_MAX_CONF_BYTES): pass large data by reference, e.g. a path or a URL"
    )


def _too_deep(where: str, limits: ConfLimits) -> str:
    return (
        f"{where}: nested deeper than {limits.max_depth} levels of objects and arrays "
        "(DRAYMAN_MAX_CONF_DEPTH): flatten it"
    )


def _json_name(value: object) -> str:
    if value is None:
        return "null"
    kind = json_type(value)
    return f"a JSON {kind}" if kind else type(value).__name__


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
            raise ParamsError(
                f"param {name!r} is required: give it a value in the run conf",
                field=f"conf.{name}",
            )
        problem = type_problem(param_type(spec), value)
        if problem:
            raise ParamsError(f"param {name!r}: {problem}", field=f"conf.{name}")
        effective[name] = value
    return effective


def param_type(spec: ParamSpec) -> str | None:
    """The type a param's value must have: the declared one, else its default's (a plain
    `params={"rows": 50}` takes integers only, as `Param(50, type="integer")` would)."""
    return spec.type or json_type(spec.default)


def json_type(value: Any) -> str | None:
    """The param type of a JSON value (None for null)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return None


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
