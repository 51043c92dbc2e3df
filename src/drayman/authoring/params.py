"""DAG params: declared inputs of a run, with defaults that the run conf may override.

`Param` is what a DAG file writes; `spec.ParamSpec` is what gets stored.
`drayman.conf.validate_conf` works on `ParamSpec`s only, so the scheduler, the CLI and
the API check a trigger's conf without importing any user code.

A param is *required* when its effective value (the conf's, else the default) must not be
None. That lets a scheduled run, which has no conf, use the default of a required param.
"""

from __future__ import annotations

import json
import reprlib
from dataclasses import dataclass
from typing import Any

from drayman.conf import PARAM_TYPES, type_problem, validate_conf
from drayman.spec import ParamSpec

__all__ = ["PARAM_TYPES", "Param", "param_spec", "validate_conf"]


@dataclass(frozen=True)
class Param:
    """A DAG param with a default and, optionally, a type, a description and `required`.

    `type` is one of "string", "integer", "number", "boolean", "array", "object". The default
    must be JSON data; it is checked against the type when the DAG is built.
    """

    default: Any = None
    type: str | None = None
    description: str = ""
    required: bool = False


def param_spec(name: str, value: Any) -> ParamSpec:
    """The stored form of one entry of `DAG(params=...)`: a `Param` (or `ParamSpec`) or a default.

    Raises ValueError (the DAG adds its location) when the type is unknown, the default is not
    JSON data, or the default does not fit the type.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"param names must be non-empty strings, got {name!r}")
    if isinstance(value, ParamSpec):  # already the stored form: check it all the same
        value = Param(value.default, value.type, value.description, value.required)
    param = value if isinstance(value, Param) else Param(value)
    if param.type is not None and param.type not in PARAM_TYPES:
        valid = ", ".join(PARAM_TYPES)
        raise ValueError(f"param {name!r}: unknown type {param.type!r} (valid: {valid})")
    default = _as_json(name, param.default)
    problem = type_problem(param.type, default)
    if problem:
        raise ValueError(f"param {name!r}: default: {problem}")
    return ParamSpec(
        default=default,
        type=param.type,
        description=str(param.description),
        required=bool(param.required),
    )


def _as_json(name: str, value: Any) -> Any:
    """`value` as it will read back from the stored JSON (tuples become lists)."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"param {name!r}: default {reprlib.repr(value)} is not JSON data ({exc})"
        ) from exc
