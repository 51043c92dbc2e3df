"""Security defaults of the web app, each with a test: auth everywhere, CSRF on cookie
writes, security headers, escaping, body cap, safe redirects after login."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from webworld import PASSWORD, WebWorld

Client = Callable[[str], TestClient]

PUBLIC = {"/health", "/api/v1/health"}


def _api_routes(world: WebWorld) -> list[tuple[str, str]]:
    schema = world.client("viewer").get("/api/v1/openapi.json").json()
    routes = []
    for path, operations in schema["paths"].items():
        concrete = (
            path.replace("{dag_id}", "web_demo")
            .replace("{run_id}", "r")
            .replace("{task_id}", "t")
            .replace("{try_id}", "1")
        )
        routes += [(method.upper(), concrete) for method in operations]
    return routes


def test_every_api_route_but_health_needs_auth(world: WebWorld, anonymous: TestClient) -> None:
    routes = [*_api_routes(world), ("GET", "/api/v1/openapi.json")]
    assert len(routes) >= 15, routes
    for method, path in routes:
        answer = anonymous.request(method, path, json={})
        if path in PUBLIC:
            assert answer.status_code in {200, 503}, f"{path} needs no auth"
            continue
        assert answer.status_code == 401, f"{method} {path} answered {answer.status_code}"
        assert answer.json()["error"]["code"] == "unauthenticated"


def test_a_bad_token_is_refused(anonymous: TestClient) -> None:
    for header in ("Bearer drm_nope", "Basic dXNlcjpwYXNz", "Bearer ", "drm_x"):
        answer = anonymous.get("/api/v1/dags", headers={"Authorization": header})
        assert answer.status_code == 401, f"{header!r}: {answer.status_code}"


def test_a_page_without_a_session_redirects_to_login(anonymous: TestClient) -> None:
    answer = anonymous.get("/logout-not-a-page?x=1", follow_redirects=False)
    assert answer.status_code == 404, "an unknown page is a 404 page"
    answer = anonymous.get("/", follow_redirects=False)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"].startswith("/login?next="), answer.headers


def test_login_sets_an_httponly_samesite_cookie_and_logout_ends_it(world: WebWorld) -> None:
    client = world.client()
    page = client.get("/login")
    assert page.status_code == 200 and 'name="password"' in page.text
    wrong = client.post("/login", data={"username": "viewer", "password": "nope-nope"})
    assert wrong.status_code == 401 and "invalid username or password" in wrong.text
    answer = client.post(
        "/login",
        data={"username": "viewer", "password": PASSWORD, "next": "/dags"},
        follow_redirects=False,
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/dags", answer.text
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie, cookie
    assert "secure" not in cookie, "plain http: a Secure cookie would never come back"
    assert client.get("/api/v1/dags").status_code == 200, "the session cookie authenticates"
    refused = client.post("/logout", follow_redirects=False)
    assert refused.status_code == 403, "logout without the CSRF token is refused"
    token = _csrf(world, client)
    done = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert done.status_code == 303, done.text
    client.cookies.clear()
    client.cookies.set("drayman_session", answer.cookies["drayman_session"])
    assert client.get("/api/v1/dags").status_code == 401, "the session ended at logout"


def test_login_never_redirects_to_another_site(world: WebWorld) -> None:
    for target in ("https://evil.example/", "//evil.example", "/\\evil.example", "javascript:x"):
        answer = world.client().post(
            "/login",
            data={"username": "viewer", "password": PASSWORD, "next": target},
            follow_redirects=False,
        )
        assert answer.headers["location"] == "/", f"next={target!r} -> {answer.headers}"


def test_a_login_posted_from_another_origin_is_refused(world: WebWorld) -> None:
    answer = world.client().post(
        "/login",
        data={"username": "viewer", "password": PASSWORD},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert answer.status_code == 403, answer.text


def _csrf(world: WebWorld, client: TestClient) -> str:
    from drayman.web.security import _csrf_token

    return _csrf_token(world.app.state.web.secret_key, client.cookies["drayman_session"])


def test_csrf_is_enforced_on_cookie_writes_and_not_on_token_writes(world: WebWorld) -> None:
    client = world.client("operator", login=True)
    body = {"paused": False}
    missing = client.patch("/api/v1/dags/web_other", json=body)
    assert missing.status_code == 403 and missing.json()["error"]["code"] == "csrf", missing.text
    wrong = client.patch("/api/v1/dags/web_other", json=body, headers={"X-CSRF-Token": "0" * 64})
    assert wrong.status_code == 403, wrong.text
    good = client.patch(
        "/api/v1/dags/web_other", json=body, headers={"X-CSRF-Token": _csrf(world, client)}
    )
    assert good.status_code == 200, good.text
    assert client.get("/api/v1/dags").status_code == 200, "reads need no CSRF token"
    by_token = world.client("operator").patch("/api/v1/dags/web_other", json=body)
    assert by_token.status_code == 200, "a bearer token needs no CSRF token"


def test_security_headers_are_on_every_response(world: WebWorld, as_role: Client) -> None:
    for answer in (
        as_role("viewer").get("/api/v1/dags"),
        world.client().get("/login"),
        world.client().get("/api/v1/dags"),
        world.client().get("/health"),
    ):
        csp = answer.headers.get("content-security-policy", "")
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, answer.headers
        assert "'unsafe-inline'" not in csp, csp
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["referrer-policy"] == "same-origin"


def test_html_in_data_comes_back_as_json_data(as_role: Client) -> None:
    answer = as_role("viewer").get("/api/v1/dags/web_demo")
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert body["description"] == "<script>alert('description')</script>"
    assert "<b>bold</b>" in body["tags"]


def test_the_login_page_escapes_what_it_echoes(world: WebWorld) -> None:
    answer = world.client().post(
        "/login", data={"username": "<script>x</script>", "password": "whatever1"}
    )
    assert "<script>x</script>" not in answer.text and "&lt;script&gt;" in answer.text


def test_huge_bodies_are_refused_with_413(as_role: Client) -> None:
    client = as_role("operator")
    huge = b'{"conf": {"x": "' + b"a" * (1024 * 1024) + b'"}}'
    answer = client.post(
        "/api/v1/dags/web_demo/runs", content=huge, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "too_large"

    def chunks():  # no Content-Length: the cap must hold on the stream too
        for _ in range(20):
            yield b"a" * 100_000

    streamed = client.post(
        "/api/v1/dags/web_demo/runs", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413, streamed.text
