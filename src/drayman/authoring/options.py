"""Task options: retries, retry_delay, queue, pool, trigger_rule, callbacks, ...

Options are checked when the task is defined, so a typo fails the DAG file at parse time with
its file and line, not a run hours later. A DAG may set defaults for all of its tasks
(`TaskDefaultArgs`); `normalize_options` checks them and `TaskOptions` holds the result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypedDict

from drayman.authoring.callbacks import Callback, CallbackArg
from drayman.authoring.locations import did_you_mean
from drayman.exceptions import DagDefinitionError
from drayman.spec import TRIGGER_RULES


class TaskDefaultArgs(TypedDict, total=False):
    """Task options a DAG may set for all of its tasks, as keyword arguments of `DAG(...)`."""

    retries: int
    retry_delay: timedelta | float
    retry_backoff: bool
    max_retry_delay: timedelta | float | None
    execution_timeout: timedelta | float | None
    queue: str
    pool: str
    pool_slots: int
    priority: int
    trigger_rule: str
    on_retry: CallbackArg | None


class TaskArgs(TaskDefaultArgs, total=False):
    """Every task option: the DAG-level defaults plus the task's own callbacks."""

    on_success: CallbackArg | None
    on_failure: CallbackArg | None


@dataclass(frozen=True)
class TaskOptions:
    """A task's scheduling options, normalized: durations in seconds, callbacks as tuples."""

    retries: int = 0
    retry_delay_s: float = 300.0
    retry_backoff: bool = False  # exponential: retry_delay * 2**(try-1), capped by max_retry_delay
    max_retry_delay_s: float | None = None
    execution_timeout_s: float | None = None
    queue: str = "default"
    pool: str = "default_pool"
    pool_slots: int = 1
    priority: int = 1
    trigger_rule: str = "all_success"
    on_success: tuple[Callback, ...] = ()
    on_failure: tuple[Callback, ...] = ()
    on_retry: tuple[Callback, ...] = ()


# ----------------------------------------------------------------------------- option checks
# Each check returns the normalized value or raises ValueError saying what it expected.


def _count(minimum: int) -> Callable[[object], int]:
    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"must be an integer >= {minimum}, got {value!r}")
        return value

    return check


def _seconds(*, optional: bool, positive: bool = False) -> Callable[[object], float | None]:
    def check(value: object) -> float | None:
        if value is None and optional:
            return None
        if isinstance(value, timedelta):
            seconds = value.total_seconds()
        elif isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        else:
            raise ValueError(f"must be a timedelta or a number of seconds, got {value!r}")
        if not math.isfinite(seconds) or seconds < 0 or (positive and seconds == 0):
            raise ValueError(f"must be {'> 0' if positive else '>= 0'} seconds, got {value!r}")
        return seconds

    return check


def _integer(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be an integer, got {value!r}")
    return value


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be True or False, got {value!r}")
    return value


def _name(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be a non-empty string, got {value!r}")
    return value


def _trigger_rule(value: object) -> str:
    if value not in TRIGGER_RULES:
        raise ValueError(f"must be one of {', '.join(sorted(TRIGGER_RULES))}; got {value!r}")
    return str(value)


def check_callbacks(value: object) -> tuple[Callback, ...]:
    """A callback option as a tuple: None, one callable, or a list of them (notifiers)."""
    if value is None:
        return ()
    items = value if isinstance(value, list | tuple) else [value]
    callbacks: list[Callback] = []
    for item in items:
        if not callable(item):
            raise ValueError(f"must be a callable or a list of callables, got {item!r}")
        callbacks.append(item)
    return tuple(callbacks)


# user-facing option name -> (TaskOptions field, check)
_OPTIONS: dict[str, tuple[str, Callable[[object], Any]]] = {
    "retries": ("retries", _count(0)),
    "retry_delay": ("retry_delay_s", _seconds(optional=False)),
    "retry_backoff": ("retry_backoff", _flag),
    "max_retry_delay": ("max_retry_delay_s", _seconds(optional=True)),
    "execution_timeout": ("execution_timeout_s", _seconds(optional=True, positive=True)),
    "queue": ("queue", _name),
    "pool": ("pool", _name),
    "pool_slots": ("pool_slots", _count(1)),
    "priority": ("priority", _integer),
    "trigger_rule": ("trigger_rule", _trigger_rule),
    "on_success": ("on_success", check_callbacks),
    "on_failure": ("on_failure", check_callbacks),
    "on_retry": ("on_retry", check_callbacks),
}


def normalize_options(
    raw: Mapping[str, object], owner: str, *, also_valid: Iterable[str] = ()
) -> dict[str, Any]:
    """Task options checked and keyed by `TaskOptions` field; `owner` prefixes every error.

    `also_valid` are other keywords of the caller, used only to suggest a spelling.
    """
    normalized: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in _OPTIONS:
            hint = did_you_mean(name, [*_OPTIONS, *also_valid])
            valid = ", ".join(_OPTIONS)
            raise DagDefinitionError(
                f"{owner}: unknown keyword {name!r}{hint}; task options are {valid}"
            )
        field_name, check = _OPTIONS[name]
        try:
            normalized[field_name] = check(value)
        except ValueError as exc:
            raise DagDefinitionError(f"{owner}: {name} {exc}") from None
    return normalized
