"""`drayman web`: serve the web UI and the REST API with uvicorn.

The web server never imports user code (it reads serialized DAGs), so it can run anywhere
the database is reachable; run several behind a balancer with one DRAYMAN_SECRET_KEY.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import socket
import threading
from collections.abc import Iterator
from typing import Any

import click

from drayman.cli import logs
from drayman.cli.common import load_settings, open_store
from drayman.config import Settings
from drayman.exceptions import ConfigError
from drayman.store.engine import Store

DEFAULT_PORT = 8080


@click.command("web")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(1, 65535))
def web(host: str, port: int) -> None:
    """Serve the web UI and the REST API (/api/v1) until stopped.

    Needs a migrated database and a user: `drayman users create NAME --role admin`.
    Listens on 127.0.0.1 by default; put it behind a TLS-terminating proxy to expose it.
    """
    settings = load_settings()
    logs.setup(settings.log_format)
    store = open_store(settings)
    try:
        serve_web(settings, store, host=host, port=port)
    finally:
        store.dispose()


def serve_web(settings: Settings, store: Store, *, host: str, port: int) -> None:
    """Run uvicorn on the app in this thread until SIGINT/SIGTERM (uvicorn handles them)."""

    from drayman.web.app import create_app

    click.echo(f"drayman web: http://{host}:{port}/  (API: /api/v1, health: /health)")
    config = uvicorn_config(create_app(settings, store), settings, host=host, port=port)
    _server_exiting_0(config).run()


def uvicorn_config(app: Any, settings: Settings, *, host: str, port: int) -> Any:
    """uvicorn's settings for `drayman web` and `standalone` alike. The forwarded headers
    (X-Forwarded-Proto: Secure cookies behind TLS; X-Forwarded-For: the client address, as
    `web.client_address` reads it) are believed from `trusted_proxies` only: with none, not
    at all. uvicorn's own default trusts loopback, i.e. any process on this host, a task's
    included, which could then choose the address its logins are counted and audited under."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies),
        server_header=False,
    )


def _server_exiting_0(config: Any) -> Any:
    """A uvicorn server that stops gracefully on SIGINT/SIGTERM and then returns.

    uvicorn (>= 0.29) raises the signal it caught again after its graceful shutdown, so the
    process ended killed by SIGTERM (-15), which a service manager reports as a failure.
    """
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server(config)


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, or a ConfigError saying how to choose another port.

    `drayman standalone` binds before it starts anything: a taken port must stop it at once,
    not leave it running without a web server while its banner names another one's URL.
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: TIME_WAIT is free
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {port} in use; set DRAYMAN_WEB_PORT or --port") from None
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror}; set DRAYMAN_WEB_PORT or --port"
        ) from None
    sock.set_inheritable(False)
    return sock


class WebThread:
    """The web server on a background thread, for `drayman standalone`: the main thread
    runs the scheduler and owns the signal handlers, so uvicorn installs none here.
    It serves on a socket already bound by `listen`."""

    def __init__(self, settings: Settings, store: Store, sock: socket.socket) -> None:
        import uvicorn

        from drayman.web.app import create_app

        host, port = sock.getsockname()[:2]
        config = uvicorn_config(create_app(settings, store), settings, host=host, port=port)
        self._server = uvicorn.Server(config)
        self._sock = sock
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="web", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=timeout_s)
        self._sock.close()
