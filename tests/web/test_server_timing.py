"""`Server-Timing` on every response: a page, an API call, a 404, /health, a redirect, a 413,
a static file. Its `total` is what bench/ui.py measures the UI by, so its format is checked
against that parser too; `db` must count this request's SQL and nothing else."""

from __future__ import annotations

import re
import threading

import pytest
from bench.ui import server_time_s, server_timings
from fastapi.testclient import TestClient
from httpx2 import Response
from webworld import SECRET, WebWorld

from drayman.web.app import create_app
from drayman.web.middleware import ServerTiming

# milliseconds with one decimal, total first
HEADER = re.compile(r"^total;dur=(\d+\.\d), db;dur=(\d+\.\d)$")


def timings(answer: Response, what: str) -> tuple[float, float]:
    """(total, db) in ms from the answer's header; fails naming the request if malformed."""
    value = answer.headers.get("server-timing")
    assert value is not None, f"{what}: no Server-Timing header (status {answer.status_code})"
    found = HEADER.match(value)
    assert found, f"{what}: Server-Timing {value!r} is not 'total;dur=N.N, db;dur=N.N'"
    total, db = float(found.group(1)), float(found.group(2))
    assert 0 <= db <= total + 0.1, f"{what}: SQL time {db} ms exceeds the total {total} ms"
    return total, db


@pytest.mark.parametrize(
    ("role", "path", "status"),
    [
        ("viewer", "/dags/web_demo", 200),  # a page
        ("viewer", "/api/v1/dags", 200),  # an API call
        ("viewer", "/api/v1/dags/no_such_dag", 404),
        ("viewer", "/no/such/page", 404),
        (None, "/health", None),  # 200 or 503: no scheduler heartbeats in the shared world
        (None, "/dags/web_demo", 303),  # to the login form
        (None, "/static/live.js", 200),
    ],
)
def test_every_kind_of_response_has_a_parseable_header(
    world: WebWorld, role: str | None, path: str, status: int | None
) -> None:
    answer = world.client(role).get(path, follow_redirects=False)
    what = f"GET {path} as {role or 'nobody'}"
    if status is not None:
        assert answer.status_code == status, f"{what}: {answer.status_code} {answer.text[:200]}"
    total, _db = timings(answer, what)
    seconds = server_time_s(dict(answer.headers))
    assert seconds == pytest.approx(total / 1000), f"{what}: bench/ui.py reads {seconds} s"


def test_a_refused_large_body_is_timed_too(world: WebWorld) -> None:
    answer = world.client("admin").post(
        "/api/v1/dags/web_demo/runs", content=b"x" * (1024 * 1024 + 1)
    )
    assert answer.status_code == 413, answer.text[:200]
    timings(answer, "a 413")


def test_db_counts_the_sql_of_this_request_only(world: WebWorld) -> None:
    client = world.client("viewer")
    _, page_db = timings(client.get("/dags/web_demo"), "the DAG page")
    assert page_db > 0, "the DAG page runs a dozen queries in the thread pool, but db is 0"
    _, static_db = timings(client.get("/static/live.js"), "a static file")
    assert static_db == 0, f"a static file runs no SQL, but db is {static_db} ms"


def test_sql_outside_a_request_is_not_counted(world: WebWorld) -> None:
    """Standalone's scheduler shares the engine: its queries must not land on a request."""
    stop = threading.Event()

    def busy_scheduler() -> None:
        while not stop.is_set():
            with world.store.read() as conn:
                conn.exec_driver_sql("SELECT 1").all()

    thread = threading.Thread(target=busy_scheduler, daemon=True)
    thread.start()
    try:
        answer = world.client().get("/static/live.js")
    finally:
        stop.set()
        thread.join(timeout=5)
    _, db = timings(answer, "a static file while another thread queries")
    assert db == 0, f"another thread's SQL was counted for this request: db {db} ms"


def test_server_timing_is_the_outermost_middleware(world: WebWorld) -> None:
    """Outermost among ours, so `total` covers the body cap and the security headers too."""
    outermost = world.app.user_middleware[0].cls
    assert outermost is ServerTiming, f"the outermost middleware is {outermost.__name__}"


def test_bench_reads_both_metrics(world: WebWorld) -> None:
    answer = TestClient(world.app).get("/health")
    total, db = timings(answer, "/health")
    read = server_timings(dict(answer.headers))
    assert read == {"total": pytest.approx(total / 1000), "db": pytest.approx(db / 1000)}


def test_an_unexpected_error_is_a_500_with_the_security_headers_and_server_timing(
    world: WebWorld,
) -> None:
    app = create_app(world.settings, world.store, secret_key=SECRET, passwords=world.passwords)

    def boom() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/api/v1/boom", boom)
    app.add_api_route("/boom", boom)
    client = TestClient(app, raise_server_exceptions=False)
    client.headers["Authorization"] = f"Bearer {world.tokens['viewer']}"
    for path in ("/api/v1/boom", "/boom"):
        answer = client.get(path)
        assert answer.status_code == 500, f"{path}: {answer.status_code}"
        assert "content-security-policy" in answer.headers, f"{path}: no CSP on a 500"
        assert "server-timing" in answer.headers, f"{path}: no Server-Timing on a 500"
        assert "a bug" not in answer.text, "a 500 must not show the exception"
    assert client.get("/api/v1/boom").json()["error"]["code"] == "internal"
