"""Read what a warm worker sends back: only the protocol's own messages, never arbitrary pickles.

A warm process's messages are pickles (see `drayman.runner.protocol`), and a plain `pickle.loads`
calls whatever a pickle names: were anything but drayman's own code able to write on the
connection (a try, which runs the DAG author's code in a fork of that worker), it would run
code in the scheduler or `drayman worker`. Tries do not inherit the connection
(`drayman.runner.process` closes every fd it does not need); this is the second lock: a pickle
that names any class but the few below is refused, and the executor goes on.
"""

from __future__ import annotations

import io
import pickle
from datetime import datetime, timedelta, timezone

from drayman.exceptions import ExecutorError
from drayman.runner.protocol import FROM_WARM_PROCESS

# What a worker sends, and what those hold; containers and scalars need no class lookup.
ALLOWED: dict[tuple[str, str], type] = {
    (cls.__module__, cls.__qualname__): cls
    for cls in (*FROM_WARM_PROCESS, datetime, timezone, timedelta)
}
_SHOWN = 120  # at most this many characters of a refused name in the error


class RefusedMessage(ExecutorError):
    """A worker sent something that is not one of the protocol's messages."""


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> type:
        cls = ALLOWED.get((module, name))
        if cls is None:
            refused = f"{module}.{name}"[:_SHOWN]
            raise RefusedMessage(
                f"a worker sent a pickle naming {refused!r}, which is not a message of the "
                "executor's protocol: refused (a task may be trying to reach drayman's process)"
            )
        return cls

    def persistent_load(self, pid: object) -> object:
        raise RefusedMessage("a worker sent a pickle with a persistent id: refused")


def decode(data: bytes) -> object:
    """The message in `data`; `RefusedMessage` for anything else, however malformed."""
    try:
        return _Unpickler(io.BytesIO(data)).load()
    except RefusedMessage:
        raise
    except Exception as exc:  # truncated or garbled: also never the executor's problem
        raise RefusedMessage(
            f"a worker sent {len(data)} bytes that are not a valid message: "
            f"{type(exc).__name__}: {str(exc)[:_SHOWN]}"
        ) from None
