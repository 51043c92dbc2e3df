"""`drayman web` and `drayman standalone` serving over a real TCP socket, as an operator's
browser, a script and a load balancer meet them: health without auth, the login and its
cookie, the security headers, API tokens, and a clean exit on SIGTERM.

Requests go through `http.client`, which follows no redirect and keeps every header, so what
is checked is exactly what the server sent.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from support.cli import DRAYMAN, Server, describe
from support.waiting import wait_until

if TYPE_CHECKING:
    from support.cli import Drayman

USERNAME = "web-admin"
PASSWORD = "a long web serve password"
STOP_WITHIN_S = 5.0

TINY_DAG = """
from drayman import DAG, task

with DAG("serve_tiny", schedule=None):

    @task
    def hello():
        print("hello")
"""


# ---------------------------------------------------------------- HTTP over a real socket


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        kind = self.headers.get("content-type", "")
        assert kind.startswith("application/json"), f"not JSON ({kind}): {self.body[:300]!r}"
        return json.loads(self.body)

    def __str__(self) -> str:
        return f"{self.status} {dict(self.headers)} {self.body[:300]!r}"


def call(
    port: int,
    path: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
) -> Answer:
    body = urllib.parse.urlencode(form).encode() if form is not None else None
    sent = dict(headers or {})
    if body is not None:
        sent["Content-Type"] = "application/x-www-form-urlencoded"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(port: int) -> bool:
    try:
        call(port, "/health")
    except OSError:
        return False
    return True


def healthy(port: int) -> dict[str, Any] | None:
    """/health's body once it answers 200 (database ok and a scheduler heartbeating)."""
    try:
        answer = call(port, "/health")
    except OSError:
        return None
    return answer.json() if answer.status == 200 else None


# ---------------------------------------------------------------- the CLI and the servers


def with_stdin(d: Drayman, text: str, *args: str) -> str:
    proc = subprocess.run(
        [str(DRAYMAN), *args],
        env=d.env,
        cwd=d.root,
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"command failed:\n{describe(proc)}"
    return proc.stdout


@contextmanager
def drayman_web(d: Drayman, port: int) -> Iterator[Server]:
    """`drayman web` on `port` until the block ends, in its own session (so only its group is
    ever killed); the block starts once it answers /health."""
    output_path = d.root / f"web-{port}.out"
    with output_path.open("wb") as out:
        proc = subprocess.Popen(
            [str(DRAYMAN), "web", "--host", "127.0.0.1", "--port", str(port)],
            env=d.env,
            cwd=d.root,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(proc, output_path, "web")
    try:
        wait_until(
            lambda: server.check_alive() or answers(port),
            20,
            f"drayman web to answer on port {port}",
            last=server.output,
            interval_s=0.1,
        )
        yield server
    finally:
        server.stop(timeout=10)
        server.kill_group()


@dataclass
class Served:
    drayman: Drayman
    port: int
    server: Server


@pytest.fixture(scope="module")
def served(make_drayman: Callable[..., Drayman]) -> Iterator[Served]:
    """A migrated installation with an admin, its scheduler, and `drayman web` on a free port."""
    d = make_drayman("web-serve")
    d.write_dag("tiny.py", TINY_DAG)
    d.ok("db", "migrate")
    with_stdin(d, PASSWORD + "\n", "users", "create", USERNAME, "--role", "admin",
               "--password-stdin")  # fmt: skip
    port = free_port()
    with d.serve("scheduler", grace=2.0), drayman_web(d, port) as server:
        yield Served(d, port, server)


def login(port: int) -> Answer:
    return call(
        port,
        "/login",
        method="POST",
        headers={"Origin": f"http://127.0.0.1:{port}"},
        form={"username": USERNAME, "password": PASSWORD, "next": "/"},
    )


def session_cookie(answer: Answer) -> tuple[str, list[str]]:
    """The session cookie's `name=value` and its attributes, lowercased."""
    cookies = answer.headers.get_all("set-cookie") or []
    session = [c for c in cookies if c.startswith("drayman_session=")]
    assert len(session) == 1, f"the login set no (or several) session cookies: {cookies}"
    pair, *attributes = (part.strip() for part in session[0].split(";"))
    return pair, [a.lower() for a in attributes]


# ---------------------------------------------------------------- drayman web


def test_health_answers_json_without_auth(served: Served) -> None:
    body = wait_until(
        lambda: healthy(served.port),
        15,
        "/health to answer 200 (database ok, the scheduler heartbeating)",
        last=lambda: str(call(served.port, "/health")),
    )
    assert body["database"] == "ok", body
    assert body["scheduler"]["alive"] is True, body
    answer = call(served.port, "/health")
    assert answer.headers.get("server-timing", "").startswith("total;dur="), str(answer)


def test_root_sends_a_browser_without_session_to_the_login(served: Served) -> None:
    answer = call(served.port, "/")
    assert answer.status == 303, f"GET / without a session: {answer}"
    target = urllib.parse.urlsplit(answer.headers["location"])
    assert target.path == "/login", str(answer)
    assert urllib.parse.parse_qs(target.query) == {"next": ["/"]}, str(answer)
    assert call(served.port, "/login").status == 200, "the login form itself needs no auth"


def test_login_gives_an_httponly_samesite_cookie_that_opens_the_dags_page(
    served: Served,
) -> None:
    answer = login(served.port)
    assert answer.status == 303 and answer.headers["location"] == "/", f"login: {answer}"
    pair, attributes = session_cookie(answer)
    assert "httponly" in attributes, f"the session cookie is readable by scripts: {attributes}"
    assert "samesite=lax" in attributes, f"the session cookie has no SameSite: {attributes}"
    assert "secure" not in attributes, "plain http on loopback: a Secure cookie would be lost"
    page = call(served.port, "/", headers={"Cookie": pair})
    assert page.status == 200, f"the DAGs page with the session: {page}"
    assert b"serve_tiny" in page.body, "the DAGs page does not list the DAG"
    csp = page.headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, f"CSP: {csp!r}"


def test_a_wrong_password_gets_no_cookie(served: Served) -> None:
    answer = call(
        served.port,
        "/login",
        method="POST",
        form={"username": USERNAME, "password": "not the password", "next": "/"},
    )
    assert answer.status == 401, f"a wrong password: {answer}"
    assert not answer.headers.get_all("set-cookie"), f"a cookie for a wrong password: {answer}"


def test_api_takes_a_cli_token_and_refuses_a_wrong_one(served: Served) -> None:
    made = served.drayman.json("tokens", "create", "--user", USERNAME, "--name", "serve-test")
    good = call(served.port, "/api/v1/dags", headers={"Authorization": f"Bearer {made['token']}"})
    assert good.status == 200, f"the API with a token from `drayman tokens create`: {good}"
    assert [d["dag_id"] for d in good.json()["items"]] == ["serve_tiny"], str(good)
    bad = call(served.port, "/api/v1/dags", headers={"Authorization": "Bearer drm_wrong"})
    assert bad.status == 401, f"a wrong token: {bad}"
    error = bad.json()["error"]
    assert error["code"] == "unauthenticated" and error["message"], error


def test_sigterm_stops_drayman_web_with_exit_0(served: Served) -> None:
    """A second `drayman web` of the same installation (the module's keeps serving)."""
    port = free_port()
    with drayman_web(served.drayman, port) as server:
        server.proc.send_signal(signal.SIGTERM)
        try:
            code = server.proc.wait(timeout=STOP_WITHIN_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"drayman web still runs {STOP_WITHIN_S:g} s after SIGTERM")
        assert code == 0, f"drayman web exited {code} on SIGTERM:\n{server.output()}"
    assert not answers(port), f"port {port} still answers after drayman web exited"


# ---------------------------------------------------------------- drayman standalone


def test_standalone_serves_the_web_on_its_port(make_drayman: Callable[..., Drayman]) -> None:
    port = free_port()
    d = make_drayman("standalone-web", web_port=str(port))
    d.write_dag("tiny.py", TINY_DAG)
    with d.serve("standalone", grace=2.0) as server:
        assert f"http://127.0.0.1:{port}/" in server.output(), "the banner names the web port"
        body = d.wait_for(
            lambda: healthy(port),
            15,
            f"/health on standalone's web port {port} to answer 200",
        )
        assert body["database"] == "ok", body
        assert body["scheduler"]["alive"] is True, body
        assert body["scheduler"]["heartbeat_age_s"] < 20, body
        assert call(port, "/").status == 303, "standalone's web serves the login-guarded UI"
        stopping = time.monotonic()
    # leaving `serve` sent SIGTERM and required exit code 0
    took = time.monotonic() - stopping
    assert took < 15, f"drayman standalone took {took:.1f} s to stop on SIGTERM"
    assert not answers(port), f"port {port} still answers after standalone exited"


@contextmanager
def occupied_port() -> Iterator[int]:
    """A port another program listens on, for as long as the block runs."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def run_in_own_session(d: Drayman, *args: str, timeout: float = 30.0) -> tuple[int, str, int]:
    """Run `drayman *args` as the leader of a new session: (exit code, output, its pgid).

    A command that should have exited but keeps running fails the test (and is killed)."""
    proc = subprocess.Popen(
        [str(DRAYMAN), *args],
        env=d.env,
        cwd=d.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    server = Server(proc, d.root / "unused.out", args[0])
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        server.stop(timeout=10)
        server.kill_group()
        output, _ = proc.communicate()
        pytest.fail(f"`drayman {' '.join(args)}` still ran after {timeout:g} s:\n{output}")
    return proc.returncode, output, proc.pid


def group_is_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("how", ["setting", "option"])
def test_standalone_on_a_taken_port_exits_2_and_starts_nothing(
    make_drayman: Callable[..., Drayman], how: str
) -> None:
    """A second standalone must not run on without a web server while its banner names the
    first one's URL: it says which port is taken and how to choose another, and exits 2."""
    with occupied_port() as port:
        if how == "setting":
            d = make_drayman("standalone-taken", web_port=str(port))
            args: tuple[str, ...] = ("standalone",)
        else:
            d = make_drayman("standalone-taken-option")
            args = ("standalone", "--port", str(port))
        d.write_dag("tiny.py", TINY_DAG)
        code, output, pgid = run_in_own_session(d, *args)
        assert code == 2, f"exit code {code}, expected 2:\n{output}"
        assert f"port {port} in use; set DRAYMAN_WEB_PORT or --port" in output, output
        assert "Traceback" not in output, output
        assert f"http://127.0.0.1:{port}/" not in output, "it advertised the other server's URL"
        assert group_is_gone(pgid), "a process it started still runs after it exited"
        assert not (d.home / "drayman.db").exists(), "it migrated a database before failing"


def test_standalone_port_option_serves_there(make_drayman: Callable[..., Drayman]) -> None:
    port = free_port()
    d = make_drayman("standalone-port-option")
    d.write_dag("tiny.py", TINY_DAG)
    with d.serve("standalone", "--port", str(port), grace=2.0) as server:
        assert f"http://127.0.0.1:{port}/" in server.output(), "the banner names --port"
        d.wait_for(lambda: healthy(port), 15, f"/health on --port {port} to answer 200")
