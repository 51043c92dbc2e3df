"""The trigger form generated from a DAG's params, and the run conf read back from it.

One input per param, its kind chosen by the param's declared type (text, number, a checkbox,
JSON for arrays and objects), pre-filled with the default; plus a JSON box for conf keys that
are not params. Reading the form back converts each value to its declared type, so the conf is
what `drayman dags trigger --conf` would send, and `conf.validate_conf` checks it the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from drayman.exceptions import ParamsError
from drayman.spec import ParamSpec

EXTRA_FIELD = "conf_json"
PREFIX = "param."  # form field names are "param.<name>": a param may be called "csrf_token"


@dataclass(frozen=True)
class Field:
    name: str  # the param's name
    input_name: str
    kind: str  # "text" | "number" | "checkbox" | "json"
    value: str
    checked: bool
    type: str | None
    description: str
    required: bool
    step: str  # "1" for integers, "any" for numbers


def fields(params: Mapping[str, ParamSpec], given: Mapping[str, Any] | None = None) -> list[Field]:
    """The form's inputs, filled with `given` values (a re-shown form) or the defaults."""
    result = []
    for name, spec in params.items():
        value = given.get(name, spec.default) if given else spec.default
        kind = _kind(spec.type, spec.default)
        result.append(
            Field(
                name=name,
                input_name=PREFIX + name,
                kind=kind,
                value=_shown(kind, value),
                checked=bool(value) if kind == "checkbox" else False,
                type=spec.type,
                description=spec.description,
                required=spec.required,
                step="1" if spec.type == "integer" else "any",
            )
        )
    return result


def _kind(declared: str | None, default: Any) -> str:
    kind = declared or _json_type(default)
    if kind == "boolean":
        return "checkbox"
    if kind in ("integer", "number"):
        return "number"
    if kind in ("array", "object"):
        return "json"
    return "text"


def _json_type(value: Any) -> str | None:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return None


def _shown(kind: str, value: Any) -> str:
    if value is None or kind == "checkbox":
        return ""
    if kind == "json":
        return json.dumps(value)
    return str(value)


def conf_from_form(params: Mapping[str, ParamSpec], form: Mapping[str, Any]) -> dict[str, Any]:
    """The run conf these form values mean; ParamsError names the field that is wrong."""
    conf = _extra(str(form.get(EXTRA_FIELD, "") or ""))
    for name, spec in params.items():
        kind = _kind(spec.type, spec.default)
        raw = form.get(PREFIX + name)
        if kind == "checkbox":
            conf[name] = raw is not None
            continue
        text = "" if raw is None else str(raw)
        if text == "":
            continue  # left empty: the default applies
        conf[name] = _convert(name, spec.type or _json_type(spec.default), kind, text)
    return conf


def _extra(text: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParamsError(f"extra conf: not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ParamsError('extra conf: must be a JSON object, like {"key": "value"}')
    return value


def _convert(name: str, declared: str | None, kind: str, text: str) -> Any:
    try:
        if kind == "json":
            return json.loads(text)
        if declared == "integer":
            return int(text)
        if declared == "number":
            number = float(text)
            return int(number) if number.is_integer() and "." not in text else number
    except ValueError:
        expected = {"integer": "an integer", "number": "a number"}.get(declared or "", "JSON")
        raise ParamsError(f"param {name!r}: expected {expected}, got {text[:80]!r}") from None
    return text
