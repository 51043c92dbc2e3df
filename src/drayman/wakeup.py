"""Waking the scheduler on events instead of sleeping a fixed interval.

Each scheduler binds a Unix datagram socket in DRAYMAN_HOME; anything on the same machine
(a CLI trigger, the DAG processor) rings every bound socket with one byte. A ring that nobody
hears costs nothing and loses nothing: the scheduler's fallback poll still finds the work.

With Celery, schedulers on other hosts listen to the broker's bell too (ADR 9): a
`SchedulerWaker` rings both, so a trigger, clear, mark or cancel from any host is acted on
at once, not at the poll.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drayman.config import Settings

SOCKET_GLOB = "scheduler-*.sock"


class Doorbell:
    """The receiving end: readable when somebody rang since the last `drain`."""

    def __init__(self, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.path = home / f"scheduler-{os.getpid()}.sock"
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self._sock.bind(str(self.path))
        except OSError:  # e.g. a path too long for AF_UNIX: fall back to polling
            self._sock.close()
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)

    def fileno(self) -> int:
        return self._sock.fileno()

    def drain(self) -> bool:
        """Empty the socket; True if anybody rang."""
        rang = False
        while True:
            try:
                self._sock.recv(64)
                rang = True
            except (BlockingIOError, OSError):
                return rang

    def close(self) -> None:
        self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def ring(home: Path) -> int:
    """Wake every scheduler whose doorbell is in `home`. Returns how many heard it."""
    heard = 0
    if not home.is_dir():
        return 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        for path in home.glob(SOCKET_GLOB):
            try:
                sock.sendto(b"!", str(path))
                heard += 1
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(OSError):
                    path.unlink()  # a dead scheduler's socket
            except OSError:
                pass
    return heard


class SchedulerWaker:
    """Wakes every scheduler after a change made outside them: this host's doorbells and,
    with the Celery executor, the broker's bell that schedulers on every host hear (ADR 9).

    Ringing never blocks and never raises; `close()` waits (up to `timeout_s`) until the
    broker's ring is sent, for a short-lived process such as the CLI.
    """

    def __init__(self, settings: Settings) -> None:
        self._home = settings.home
        self._bell: Any = None
        if settings.executor == "celery" and settings.broker_url:
            from drayman.executors.celery_wakeup import OutcomeBell

            self._bell = OutcomeBell(settings)

    def wake(self) -> None:
        ring(self._home)
        if self._bell is not None:
            self._bell.ring()  # no run ids: every scheduler looks at everything

    def close(self, timeout_s: float = 2.0) -> None:
        if self._bell is not None:
            self._bell.close(timeout_s)


def wake_schedulers(settings: Settings) -> None:
    """Wake every scheduler once and wait until the ring is out (the CLI's commands)."""
    waker = SchedulerWaker(settings)
    waker.wake()
    waker.close()
