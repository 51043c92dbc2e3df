"""What every request handler needs, built once by `create_app` and kept on `app.state`.

No module-level singletons (STYLE.md): a test builds two apps on two stores side by side.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from drayman.auth.login_gate import LoginGate
from drayman.auth.passwords import Passwords
from drayman.auth.throttle import LoginLimits
from drayman.config import Settings
from drayman.store.engine import Store
from drayman.wakeup import SchedulerWaker
from drayman.web.client_address import Network


@dataclass(frozen=True)
class WebState:
    settings: Settings
    store: Store
    secret_key: str
    passwords: Passwords
    waker: SchedulerWaker  # after every change: this host's schedulers and, with Celery, all
    login_limits: LoginLimits = field(default_factory=LoginLimits)
    max_body_bytes: int = 1024 * 1024
    login_gate: LoginGate = field(default_factory=lambda: LoginGate(1))
    trusted_proxies: tuple[Network, ...] = ()


def web_state(request: HTTPConnection) -> WebState:
    """The app's state, from any request or websocket."""
    state: WebState = request.app.state.web
    return state
