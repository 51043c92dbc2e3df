"""What the web keeps private: the OpenAPI document needs a login, nothing that shows logs,
conf or params may be cached, and a disabled user's token and session stop working."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from webworld import PASSWORD, WebWorld

from drayman.auth import tokens, users


def test_the_openapi_document_needs_a_login(world: WebWorld, anonymous: TestClient) -> None:
    refused = anonymous.get("/api/v1/openapi.json")
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"]["code"] == "unauthenticated"

    document = world.client("viewer").get("/api/v1/openapi.json")
    assert document.status_code == 200 and "/api/v1/audit" in document.json()["paths"]
    cookie_client = world.client("viewer", login=True)
    assert cookie_client.get("/api/v1/openapi.json").status_code == 200


@pytest.fixture(scope="module")
def a_try(world: WebWorld) -> int:
    page = world.client("viewer", login=True).get(f"/dags/web_demo/runs/{world.done_run}").text
    found = re.search(r'href="/tries/(\d+)"', page)
    assert found, "the run page links no try"
    return int(found.group(1))


def test_pages_and_routes_that_show_logs_or_conf_are_never_cached(
    world: WebWorld, a_try: int
) -> None:
    run = f"/dags/web_demo/runs/{world.done_run}"
    pages = [
        f"/tries/{a_try}",  # the log
        f"/tries/{a_try}/log.json?pos=0&source=file",  # the log's live tail
        run,  # the run's conf and params
        f"{run}/live.json",
        "/dags/web_demo/trigger",  # the conf form, filled with the params' defaults
        "/dags/web_demo",  # params and their defaults
    ]
    api = [
        f"/api/v1/tries/{a_try}/log",
        f"/api/v1/tries/{a_try}",
        f"/api/v1/dags/web_demo/runs/{world.done_run}",
        "/api/v1/dags/web_demo/runs",
        "/api/v1/dags/web_demo",
        "/api/v1/audit",
    ]
    browser, script = world.client("admin", login=True), world.client("admin")
    for client, paths in ((browser, pages), (script, api)):
        for path in paths:
            answer = client.get(path)
            assert answer.status_code == 200, f"{path}: {answer.status_code}"
            assert answer.headers.get("cache-control") == "no-store", f"{path} may be cached"

    static = browser.get("/static/drayman.css")
    assert static.status_code == 200 and static.headers.get("cache-control") != "no-store"


def test_a_disabled_users_token_and_session_stop_working(world: WebWorld) -> None:
    users.create(world.store, world.passwords, "dora", PASSWORD, "viewer", world.store.now())
    token = tokens.create(world.store, "dora", "script", world.store.now()).token
    browser = TestClient(world.app)
    login = browser.post(
        "/login", data={"username": "dora", "password": PASSWORD}, follow_redirects=False
    )
    assert login.status_code == 303, login.text
    script = TestClient(world.app, headers={"Authorization": f"Bearer {token}"})
    assert script.get("/api/v1/dags").status_code == 200
    assert browser.get("/", follow_redirects=False).status_code == 200

    users.set_disabled(world.store, "dora", True)

    assert script.get("/api/v1/dags").status_code == 401
    page = browser.get("/", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    again = browser.post(
        "/login", data={"username": "dora", "password": PASSWORD}, follow_redirects=False
    )
    assert again.status_code == 401, "a disabled user logged in"

    users.set_disabled(world.store, "dora", False)
    assert script.get("/api/v1/dags").status_code == 200, "enable did not bring the token back"
    assert browser.get("/", follow_redirects=False).status_code == 303, "the session came back"
