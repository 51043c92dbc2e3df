"""The one rule for a service or tool a test needs and the machine lacks (dramatiq's habit):
skip with its name on a laptop, fail under CI=true, where CI must never go green by skipping
the real thing."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
# the machine's RabbitMQ, shared by the Celery tests (each uses queues or exchanges of its own)
AMQP_URL = os.environ.get("DRAYMAN_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


def missing(message: str) -> NoReturn:
    """Skip the test saying what is missing and how to get it; fail instead under CI=true."""
    if IN_CI:
        pytest.fail(f"{message} (CI=true: a missing service is a failure)")
    pytest.skip(message)


def unreachable(what: str, exc: BaseException) -> NoReturn:
    """`missing` for a server that did not answer: names it and the error it gave."""
    missing(f"{what} is not reachable ({type(exc).__name__}: {exc}); install and start it")
