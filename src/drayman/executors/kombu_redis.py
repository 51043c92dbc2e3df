"""kombu's Redis transport, with one Redis client per connection pool instead of one per use.

kombu's Redis channel builds a new `redis.Redis` client every time it needs one to talk to
the broker outside its consuming connection (`Channel._create_client` through
`conn_or_acquire`): on a worker that is twice per message, to note the message unacked and
to acknowledge it. A client's constructor fills a table of about 170 response callbacks, each
key upper-cased: a quarter of a busy worker's main thread went there. The client holds no
connection of its own (every command borrows one from the pool), so one client per pool
serves every caller, from any thread; a new pool (after a reconnect) gets a new client.

Used for `redis://` broker URLs (`transport_for`: Celery's app, the outcome bell); every
other URL keeps kombu's own transport.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    """A kombu Redis channel whose synchronous client is built once per connection pool."""

    _shared_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # the consuming connection (BRPOP): kombu keeps it already
            return super()._create_client(asynchronous=True)
        client = self._shared_client
        if client is None or client.connection_pool is not self.pool:
            client = self._shared_client = super()._create_client()
        return client


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with `Channel` above."""

    Channel = Channel


def transport_for(url: str) -> type[Transport] | None:
    """The transport to use for broker `url`; None: the one its scheme names."""
    return Transport if url.startswith("redis://") else None
