"""The login behind a proxy and under load: which address counts, and the password-check gate.

Each test that changes the login gate or trusted proxies builds its own app on the world's
store (users, tokens and DAGs shared, read-only here); the usernames that fail are made up
for each test so the shared users' login counters stay untouched.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.requests import Request
from webworld import SECRET, WebWorld

from drayman.auth import users
from drayman.auth.passwords import Passwords
from drayman.auth.throttle import LoginLimits
from drayman.cli.web import WebThread, listen
from drayman.config import Settings
from drayman.store import audit
from drayman.store.engine import Store
from drayman.web.app import create_app
from drayman.web.client_address import client_address, parse_networks

if TYPE_CHECKING:
    from support.passwords import CountingPasswords

PROXIES = parse_networks(["10.0.0.0/8", "192.0.2.1"])


def _request(peer: str, forwarded: list[str]) -> Request:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    return Request({"type": "http", "client": (peer, 1234), "headers": headers})


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.5", ["1.2.3.4"], "203.0.113.5"),  # not a proxy: its header is a lie
        ("10.1.1.1", [], "10.1.1.1"),  # a proxy's own request
        ("10.1.1.1", ["198.51.100.7"], "198.51.100.7"),
        ("10.1.1.1", ["6.6.6.6, 198.51.100.7"], "198.51.100.7"),  # left part is the client's
        ("10.1.1.1", ["6.6.6.6, 198.51.100.7, 10.2.2.2"], "198.51.100.7"),  # two proxies
        ("10.1.1.1", ["6.6.6.6", "198.51.100.7, 192.0.2.1"], "198.51.100.7"),  # two headers
        ("10.1.1.1", ["10.3.3.3, 10.2.2.2"], "10.3.3.3"),  # only proxies: the farthest
        ("10.1.1.1", ["198.51.100.7, not-an-ip"], "10.1.1.1"),  # garbage: the proxy stands
        ("10.1.1.1", ["2001:db8::1"], "2001:db8::1"),
        # a hop with its port, an IPv6 one in brackets, an IPv4-mapped IPv6 address
        ("10.1.1.1", ["198.51.100.7:5555"], "198.51.100.7"),
        ("10.1.1.1", ["6.6.6.6, 198.51.100.7:443, 10.2.2.2:80"], "198.51.100.7"),
        ("10.1.1.1", ["[2001:db8::1]:443"], "2001:db8::1"),
        ("10.1.1.1", ["[2001:db8::1]"], "2001:db8::1"),
        ("10.1.1.1", ["::ffff:198.51.100.7"], "198.51.100.7"),
        ("10.1.1.1", ["198.51.100.7, ::ffff:10.2.2.2"], "198.51.100.7"),  # a mapped proxy
        ("::ffff:10.1.1.1", ["198.51.100.7"], "198.51.100.7"),  # a mapped peer is a proxy
        ("::ffff:203.0.113.5", ["1.2.3.4"], "203.0.113.5"),
        ("10.1.1.1", ["198.51.100.7:http"], "10.1.1.1"),  # not a port: garbage
        ("10.1.1.1", ["[2001:db8::1]x"], "10.1.1.1"),
    ],
)
def test_the_client_address_is_the_right_most_untrusted_hop(
    peer: str, forwarded: list[str], expected: str
) -> None:
    assert client_address(_request(peer, forwarded), PROXIES) == expected


def test_no_proxy_is_trusted_by_default() -> None:
    """A process on the same host (a task, in standalone) must not choose its address."""
    trusted = parse_networks(Settings().trusted_proxies)
    assert client_address(_request("127.0.0.1", ["198.51.100.7"]), trusted) == "127.0.0.1"
    assert client_address(_request("::1", ["198.51.100.7"]), trusted) == "::1"


def _app(world: WebWorld, passwords: Passwords, **settings: Any) -> FastAPI:
    return create_app(
        world.settings.with_overrides(**settings),
        world.store,
        secret_key=SECRET,
        passwords=passwords,
    )


def _fail(client: TestClient, username: str, **headers: str) -> int:
    answer = client.post(
        "/login", data={"username": username, "password": "wrong password"}, headers=headers
    )
    return answer.status_code


def test_forwarded_for_from_an_untrusted_peer_does_not_pick_the_counted_address(
    world: WebWorld,
) -> None:
    """A client that changes its X-Forwarded-For on every guess still hits its limit."""
    client = TestClient(_app(world, world.passwords), client=("203.0.113.50", 1))
    limit = 5  # LoginLimits().per_user_address
    codes = [
        _fail(client, "xff-guess-target", **{"X-Forwarded-For": f"198.51.100.{i}"})
        for i in range(limit + 1)
    ]
    assert codes == [401] * limit + [429], codes


def test_behind_a_trusted_proxy_each_client_has_its_own_counter(world: WebWorld) -> None:
    app = _app(world, world.passwords, trusted_proxies=("10.0.0.0/8",))
    proxy = TestClient(app, client=("10.0.0.2", 1))
    limit = 5
    codes = [
        _fail(proxy, "proxied-target", **{"X-Forwarded-For": "198.51.100.20"})
        for _ in range(limit + 1)
    ]
    assert codes == [401] * limit + [429], codes
    other = _fail(proxy, "proxied-target", **{"X-Forwarded-For": "198.51.100.21"})
    assert other == 401, "a second client behind the proxy was locked out with the first"


class HeldPasswords(Passwords):
    """Real argon2id whose checks wait until the test lets them go, so that a test can hold
    N verifications in progress without any timing."""

    def __init__(self) -> None:
        super().__init__(memory_kib=256, time_cost=1, parallelism=1)
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()

    def verify(self, password_hash: str, password: str) -> bool:
        self.entered.release()
        self.release.wait()
        return super().verify(password_hash, password)


def test_a_flood_of_logins_is_bounded_and_the_api_still_answers(world: WebWorld) -> None:
    held = HeldPasswords()
    app = _app(world, held, login_check_slots=2)
    gate = app.state.web.login_gate
    outcomes: list[int] = []

    def log_in(index: int) -> None:
        client = TestClient(app, client=(f"203.0.113.{index}", 1))
        outcomes.append(_fail(client, f"flood-{index}"))  # unknown users: dummy hashes

    threads = [threading.Thread(target=log_in, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    try:
        for _ in threads:
            assert held.entered.acquire(timeout=30), "a login never reached its password check"
        assert gate.busy == 2

        refused = TestClient(app, client=("203.0.113.99", 1)).post(
            "/login", data={"username": "flood-x", "password": "whatever1"}
        )
        assert refused.status_code == 429, refused.text[:300]
        assert "too many login attempts" in refused.text and refused.headers["Retry-After"] == "1"

        api = TestClient(app)
        api.headers["Authorization"] = f"Bearer {world.tokens['viewer']}"
        assert api.get("/api/v1/dags").status_code == 200, "the API waited on the logins"
    finally:
        held.release.set()
        for thread in threads:
            thread.join()
    assert outcomes == [401, 401] and gate.busy == 0


def test_thirty_concurrent_wrong_logins_through_the_app_check_only_the_limit(
    store: Store, counting_passwords: CountingPasswords, tmp_path: Path
) -> None:
    """The app on each database: 30 simultaneous wrong passwords for one user from one
    address; exactly `per_user_address` are checked (401), the others refused (429)."""
    counting = counting_passwords
    users.create(store, counting, "target", "correct horse battery", "viewer", store.now())
    app = create_app(
        Settings(home=tmp_path, login_check_slots=64),
        store,
        secret_key=SECRET,
        passwords=counting,
    )
    start = threading.Barrier(30)
    codes: list[int] = []

    def guess() -> None:
        client = TestClient(app, client=("198.51.100.30", 1))
        start.wait(timeout=60)
        codes.append(_fail(client, "target"))

    threads = [threading.Thread(target=guess) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    limit = LoginLimits().per_user_address
    assert sorted(codes) == [401] * limit + [429] * (30 - limit), codes
    assert counting.calls == limit, f"{counting.calls} passwords checked, limit {limit}"


@pytest.mark.parametrize(
    ("trusted", "source"),
    [((), "127.0.0.1"), (("127.0.0.1/32",), "198.51.100.77")],
    ids=["no proxy trusted", "loopback trusted"],
)
def test_the_standalone_web_server_believes_forwarded_for_from_trusted_proxies_only(
    world: WebWorld, trusted: tuple[str, ...], source: str
) -> None:
    """The real uvicorn server of `standalone` (a local process, e.g. a task, is on loopback):
    uvicorn's own default would rewrite the client from X-Forwarded-For for any loopback peer."""
    username = f"xff-standalone-{len(trusted)}"
    settings = world.settings.with_overrides(trusted_proxies=trusted)
    web = WebThread(settings, world.store, listen("127.0.0.1", 0))
    web.start()
    try:
        port = web._sock.getsockname()[1]
        status = _post_when_listening(
            f"http://127.0.0.1:{port}/login",
            {"username": username, "password": "wrong password"},
            {"X-Forwarded-For": "198.51.100.77"},
        )
    finally:
        web.stop()

    assert status == 401
    with world.store.read() as conn:
        (event,) = audit.events(conn, actor=username)
    assert event.source == source


def _post_when_listening(url: str, form: dict[str, str], headers: dict[str, str]) -> int:
    """POST a form once the server thread accepts connections; the answer's status."""
    request = urllib.request.Request(url, urllib.parse.urlencode(form).encode(), headers)
    for _ in range(500):
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as error:
            return error.code
        except urllib.error.URLError:  # not accepting yet
            threading.Event().wait(0.02)
    raise AssertionError(f"{url}: the web thread never answered")
