"""The trigger form generated from a DAG's params, and the run conf read back from it.

One input per param, its kind chosen by the param's declared type (text, number, a checkbox,
JSON for arrays and objects), pre-filled with the default; plus a JSON box for conf keys that
are not params. Reading the form back converts each value to its declared type (a plain
param's is its default's), so the conf is what `drayman dags trigger --conf` would send, and
`drayman.conf` checks it the same way: JSON fields are parsed within the same size and depth
caps, and `run_creation.trigger` checks the whole conf.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from drayman.conf import ConfLimits, param_type, parse_conf, parse_json
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
        kind = _kind(spec)
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


def _kind(spec: ParamSpec) -> str:
    kind = param_type(spec)
    if kind == "boolean":
        return "checkbox"
    if kind in ("integer", "number"):
        return "number"
    if kind in ("array", "object"):
        return "json"
    return "text"


def _shown(kind: str, value: Any) -> str:
    if value is None or kind == "checkbox":
        return ""
    if kind == "json":
        return json.dumps(value)
    return str(value)


def conf_from_form(
    params: Mapping[str, ParamSpec], form: Mapping[str, Any], limits: ConfLimits
) -> dict[str, Any]:
    """The run conf these form values mean; ParamsError names the field that is wrong."""
    extra = str(form.get(EXTRA_FIELD, "") or "")
    conf = parse_conf(extra, limits, where="extra conf") if extra.strip() else {}
    for name, spec in params.items():
        kind = _kind(spec)
        raw = form.get(PREFIX + name)
        if kind == "checkbox":
            conf[name] = raw is not None
            continue
        text = "" if raw is None else str(raw)
        if text == "":
            continue  # left empty: the default applies
        conf[name] = _convert(name, param_type(spec), kind, text, limits)
    return conf


def _convert(name: str, declared: str | None, kind: str, text: str, limits: ConfLimits) -> Any:
    if kind == "json":
        return parse_json(text, limits, where=f"param {name!r}")
    try:
        if declared == "integer":
            return int(text)
        if declared == "number":
            number = float(text)
            return int(number) if number.is_integer() and "." not in text else number
    except ValueError:
        expected = "an integer" if declared == "integer" else "a number"
        raise ParamsError(
            f"param {name!r}: expected {expected}, got {text[:80]!r}", field=f"conf.{name}"
        ) from None
    return text
