"""Callbacks: the functions a DAG or a task calls on success, failure or retry.

A callback takes the run's `Context`, and a detail string too (the error, or the reason a DAG
run failed) if it accepts a second argument. Notifiers are callbacks too.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

from drayman.authoring.context import Context

Callback = Callable[..., object]
CallbackArg = Callback | Sequence[Callback]
CALLBACK_NAMES: tuple[str, ...] = ("on_success", "on_failure", "on_retry")


def invoke_callbacks(callbacks: Sequence[Callback], ctx: Context, detail: str | None) -> None:
    """Call each callback with `ctx`, and `detail` too if it accepts a second argument.

    Every callback gets its turn even when one raises (a failing notifier must not silence
    the next one); then the first error is raised, with the others as notes.
    """
    errors: list[Exception] = []
    for callback in callbacks:
        try:
            if _accepts_two(callback):
                callback(ctx, detail)
            else:
                callback(ctx)
        except Exception as exc:
            errors.append(exc)
    if errors:
        for other in errors[1:]:
            errors[0].add_note(f"another callback failed too: {other!r}")
        raise errors[0]


def _accepts_two(callback: Callback) -> bool:
    try:
        inspect.signature(callback).bind(None, None)
    except (TypeError, ValueError):  # ValueError: a builtin without a signature
        return False
    return True
