"""Seconds spent in SQL, counted per unit of work (the web's `Server-Timing: db`).

Listeners on the engine time each statement in the driver's execute call. PostgreSQL and
MySQL drivers wait there for the whole answer; SQLite makes its rows while they are fetched,
which is not counted, so the time reads low on SQLite.

The clock is a context variable: `counting()` sets one for the work in its block (an HTTP
request), and a thread-pool copy of that context (FastAPI's sync handlers) holds the same
clock, so their queries add to it. Work outside any block (the scheduler thread of
`standalone`) sees none and is not counted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import event

from drayman.store.engine import Store


class SqlClock:
    """Seconds the work being counted spent in SQL so far."""

    __slots__ = ("seconds",)

    def __init__(self) -> None:
        self.seconds = 0.0


_clock: ContextVar[SqlClock | None] = ContextVar("drayman_sql_clock", default=None)
_STARTED = "drayman.sql_started"


def time_statements(store: Store) -> None:
    """Count this store's statements towards the clock of the work that runs them.
    Idempotent: tests build several apps on one store, and a second pair of listeners would
    count twice."""
    engine = store.engine
    if not event.contains(engine, "before_cursor_execute", _sql_started):
        event.listen(engine, "before_cursor_execute", _sql_started)
        event.listen(engine, "after_cursor_execute", _sql_ended)


@contextmanager
def counting() -> Iterator[SqlClock]:
    """A fresh clock that the statements run in this block (and its copied contexts) add to."""
    clock = SqlClock()
    token = _clock.set(clock)
    try:
        yield clock
    finally:
        _clock.reset(token)


def _sql_started(conn: Any, *_args: Any) -> None:
    # one slot per connection: its statements run one after another; a statement that
    # raised leaves a stale start that the next statement overwrites
    if _clock.get() is not None:
        conn.info[_STARTED] = time.perf_counter()


def _sql_ended(conn: Any, *_args: Any) -> None:
    clock = _clock.get()
    started = conn.info.pop(_STARTED, None)
    if clock is not None and started is not None:
        clock.seconds += time.perf_counter() - started
