"""kombu's Redis transport, with one Redis client per connection pool instead of one per use.

kombu's Redis channel builds a new `redis.Redis` client every time it needs one to talk to
the broker outside its consuming connection (`Channel._create_client` through
`conn_or_acquire`): on a worker that is twice per message, to note the message unacked and
to acknowledge it. A client's constructor fills a table of about 170 response callbacks, each
key upper-cased: a quarter of a busy worker's main thread went there. The client holds no
connection of its own (every command borrows one from the pool), so one client per pool
serves every caller, from any thread; a new pool (after a reconnect) gets a new client.

kombu offers no setting for this (its transport options tune the pool, not the client), so
this overrides a private method. It is held to what was reviewed: pyproject.toml pins kombu
to the minor version read (`KOMBU_REVIEWED`), and tests/unit/test_kombu_redis.py fails when
kombu's `_create_client` or `conn_or_acquire` change, saying what to re-check.

The transport is given to kombu as a class, and kombu writes a connection's URL (in Celery's
"Cannot connect to ..." and every connection's repr) with the transport in the scheme's place,
as ``str()`` of it: `Transport`'s type answers ``redis`` there, so operators read the URL they
configured, never a class of drayman's.

Used for `redis://` broker URLs (`transport_for`: Celery's app, the outcome bell); every
other URL keeps kombu's own transport.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kombu.transport import redis as kombu_redis

KOMBU_REVIEWED = "5.7"  # the kombu minor version whose Channel this was checked against
SCHEME = "redis"


class Channel(kombu_redis.Channel):
    """A kombu Redis channel whose synchronous client is built once per connection pool."""

    _shared_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        create: Callable[..., Any] = super()._create_client  # kombu's: untyped
        if asynchronous:  # the consuming connection (BRPOP): kombu keeps it already
            return create(asynchronous=True)
        client = self._shared_client
        if client is None or client.connection_pool is not self.pool:
            client = self._shared_client = create()
        return client


class _NamedAsScheme(type):
    """Makes a transport class print as its URL scheme, where kombu prints it in a URL."""

    def __str__(cls) -> str:
        return SCHEME


class Transport(kombu_redis.Transport, metaclass=_NamedAsScheme):
    """kombu's Redis transport with `Channel` above."""

    Channel = Channel


def transport_for(url: str) -> type[Transport] | None:
    """The transport to use for broker `url`; None: the one its scheme names."""
    return Transport if url.startswith(f"{SCHEME}://") else None
