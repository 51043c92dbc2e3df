"""The name of this host, as tries and their outcomes record it."""

from __future__ import annotations

import functools
import socket


@functools.cache
def hostname() -> str:
    """`socket.gethostname()`, asked once per process."""
    return socket.gethostname()
