"""The kombu override in `drayman.executors.kombu_redis`: held to the kombu it was reviewed
against, and invisible to operators reading Celery's connection errors."""

from __future__ import annotations

import hashlib
import inspect
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import kombu
import pytest
from kombu.transport import redis as upstream

from drayman.config import Settings
from drayman.exceptions import ExecutorError
from drayman.executors import kombu_redis
from drayman.executors.celery import CeleryExecutor, make_app

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
CLOSED_PORT_URL = "redis://:hunter2@127.0.0.1:1/0"  # nothing listens on port 1
MASKED_URL = "redis://:**@127.0.0.1:1/0"  # as kombu and Celery write it

# sha256 of inspect.getsource() of the kombu methods the override relies on, as read in the
# kombu version `kombu_redis.KOMBU_REVIEWED`.
REVIEWED_SOURCES = {
    # overridden: its synchronous branch builds `self.Client(connection_pool=self.pool, ...)`
    "_create_client": "dae92bc4075dafb9",
    # the caller that makes a client per use: the reason the override exists at all
    "conn_or_acquire": "25883caca6c4121e",
}


def _source_hash(name: str) -> str:
    source = inspect.getsource(getattr(upstream.Channel, name))
    return hashlib.sha256(source.encode()).hexdigest()[:16]


@pytest.mark.parametrize("name", sorted(REVIEWED_SOURCES))
def test_the_kombu_methods_the_override_relies_on_are_the_ones_reviewed(name: str) -> None:
    assert _source_hash(name) == REVIEWED_SOURCES[name], (
        f"kombu {kombu.__version__} changed kombu.transport.redis.Channel.{name}. Re-read it "
        f"and drayman/executors/kombu_redis.py: does _create_client(asynchronous=False) still "
        f"build a client on self.pool that holds no connection of its own (so one per pool can "
        f"serve every caller), with the same arguments as the override's super() call, and "
        f"does conn_or_acquire still build one per use (else drop the override)? Then record "
        f"the new hashes here, KOMBU_REVIEWED in kombu_redis.py and the kombu pin in "
        f"pyproject.toml."
    )


def test_the_override_keeps_kombus_signature() -> None:
    ours = inspect.signature(kombu_redis.Channel._create_client)
    theirs = inspect.signature(upstream.Channel._create_client)
    assert list(ours.parameters) == list(theirs.parameters)


def test_kombu_is_pinned_to_the_reviewed_minor_version() -> None:
    major, minor = kombu_redis.KOMBU_REVIEWED.split(".")
    pin = f"kombu>={major}.{minor},<{major}.{int(minor) + 1}"
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    assert pin in extras["celery"], f"pyproject.toml's celery extra should pin {pin}"
    installed = kombu.__version__.split(".")[:2]
    assert installed == [major, minor], f"kombu {kombu.__version__} is installed; pin is {pin}"


def test_celerys_connections_name_the_broker_url_not_a_drayman_class() -> None:
    app = make_app(Settings(executor="celery", broker_url=CLOSED_PORT_URL))
    for connection in (app.connection_for_write(), app.connection_for_read()):
        assert connection.get_transport_cls() is kombu_redis.Transport
        assert connection.as_uri() == MASKED_URL
        assert "drayman" not in repr(connection) and "hunter2" not in repr(connection)
        connection.release()


def test_an_unreachable_broker_is_named_by_its_masked_url() -> None:
    executor = CeleryExecutor(Settings(executor="celery", broker_url=CLOSED_PORT_URL))
    with pytest.raises(ExecutorError) as raised:
        executor.start()
    text = str(raised.value)
    assert "redis://:***@127.0.0.1:1/0" in text
    assert "kombu_redis" not in text and "hunter2" not in text


WORKER = """
import logging
from drayman.config import Settings
from drayman.executors.celery import make_app

logging.basicConfig(level=logging.INFO)
app = make_app(Settings(executor="celery", broker_url={url!r}))
app.conf.broker_connection_max_retries = 1
worker = app.Worker(hostname="probe@localhost", queues=["default"], concurrency=1,
                    pool="threads", redirect_stdouts=False, without_heartbeat=True,
                    without_mingle=True, without_gossip=True, quiet=True)
try:
    worker.start()
except Exception:
    pass
"""


@pytest.mark.slow
def test_a_celery_worker_that_cannot_connect_names_the_url_it_was_given() -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(WORKER.format(url=CLOSED_PORT_URL))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = done.stdout + done.stderr
    assert f"Cannot connect to {MASKED_URL}" in output, output
    assert "kombu_redis" not in output and "hunter2" not in output
