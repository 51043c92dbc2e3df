"""The audit trail through the web: API and page actions and logins are recorded with the
user and the client's address; only admins read it (GET /api/v1/audit)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from webworld import PASSWORD, SECRET, WebWorld, csrf_of

from drayman.web.app import create_app

Client = Callable[[str], TestClient]
ADDRESS = "198.51.100.77"


def _as(world: WebWorld, role: str, address: str = ADDRESS) -> TestClient:
    client = TestClient(world.app, client=(address, 1))
    client.headers["Authorization"] = f"Bearer {world.tokens[role]}"
    return client


def _newest(as_role: Client, **params: Any) -> dict[str, Any]:
    answer = as_role("admin").get("/api/v1/audit", params={**params, "limit": 1})
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    assert items, f"no audit event for {params}"
    return dict(items[0])


def test_api_actions_are_recorded_with_user_address_and_object(
    world: WebWorld, as_role: Client
) -> None:
    operator = _as(world, "operator")

    made = operator.post(
        "/api/v1/dags/web_demo/runs", json={"conf": {"rows": 2}, "run_id": "audited-trigger"}
    )
    assert made.status_code == 201, made.text
    event = _newest(as_role, action="dag.trigger")
    assert (event["actor"], event["source"], event["object_type"], event["object_id"]) == (
        "operator",
        ADDRESS,
        "run",
        "web_demo/audited-trigger",
    )
    assert event["detail"] == {"conf_keys": ["rows"], "conf_key_count": 1}, (
        "conf values may be secret: keys only"
    )

    for paused, action in ((True, "dag.pause"), (False, "dag.unpause")):
        assert operator.patch("/api/v1/dags/web_other", json={"paused": paused}).status_code == 200
        event = _newest(as_role, action=action)
        assert (event["actor"], event["object_id"]) == ("operator", "web_other")

    base = f"/api/v1/dags/web_demo/runs/{world.done_run}/tasks/fail_me"
    assert operator.post(f"{base}/mark", json={"state": "failed"}).status_code == 200
    event = _newest(as_role, action="task.mark")
    assert event["object_id"] == f"web_demo/{world.done_run}/fail_me"
    assert event["detail"]["state"] == "failed" and event["detail"]["task_instances"] == 0


def test_a_dry_run_or_a_refused_action_records_nothing(world: WebWorld, as_role: Client) -> None:
    operator = _as(world, "operator")
    before = as_role("admin").get("/api/v1/audit", params={"limit": 500}).json()["items"]
    base = f"/api/v1/dags/web_demo/runs/{world.done_run}/tasks/fail_me"

    dry = operator.post(f"{base}/clear", json={"dry_run": True})
    refused = operator.post(f"{base}/cancel", json={})  # finished: nothing to cancel (409)
    forbidden = _as(world, "viewer").post(f"{base}/clear", json={})

    assert (dry.status_code, refused.status_code, forbidden.status_code) == (200, 409, 403)
    after = as_role("admin").get("/api/v1/audit", params={"limit": 500}).json()["items"]
    assert after == before, f"new events: {after[: len(after) - len(before)]}"


def test_page_actions_are_recorded(world: WebWorld, as_role: Client) -> None:
    operator = world.client("operator", login=True)
    token = csrf_of(operator.get("/").text)

    for flag, action in (("1", "dag.pause"), ("0", "dag.unpause")):
        answer = operator.post(
            "/dags/web_other/pause",
            data={"csrf_token": token, "paused": flag},
            follow_redirects=False,
        )
        assert answer.status_code == 303, answer.text
        event = _newest(as_role, action=action)
        assert (event["actor"], event["source"], event["object_id"]) == (
            "operator",
            "testclient",
            "web_other",
        )


def test_logins_are_recorded_with_the_address_a_trusted_proxy_forwarded(
    world: WebWorld, as_role: Client
) -> None:
    app = create_app(
        world.settings.with_overrides(trusted_proxies=("10.0.0.0/8",)),
        world.store,
        secret_key=SECRET,
        passwords=world.passwords,
    )
    proxy = TestClient(app, client=("10.9.9.9", 1))
    forwarded = {"X-Forwarded-For": "6.6.6.6, 203.0.113.44"}

    ok = proxy.post(
        "/login",
        data={"username": "viewer", "password": PASSWORD},
        headers=forwarded,
        follow_redirects=False,
    )
    assert ok.status_code == 303, ok.text
    event = _newest(as_role, action="login.success")
    assert (event["actor"], event["source"]) == ("viewer", "203.0.113.44")

    bad = proxy.post(
        "/login", data={"username": "audit-nobody", "password": "wrong one"}, headers=forwarded
    )
    assert bad.status_code == 401
    event = _newest(as_role, action="login.failure")
    assert (event["actor"], event["source"], event["detail"]) == (
        "audit-nobody",
        "203.0.113.44",
        {"reason": "invalid"},
    )


def test_only_admins_read_the_audit_trail(as_role: Client, anonymous: TestClient) -> None:
    assert anonymous.get("/api/v1/audit").status_code == 401
    for role in ("viewer", "operator"):
        answer = as_role(role).get("/api/v1/audit")
        assert answer.status_code == 403, f"{role}: {answer.status_code}"
    answer = as_role("admin").get("/api/v1/audit", params={"action": "user.", "limit": 5})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["limit"] == 5 and all(e["action"].startswith("user.") for e in body["items"])
    assert answer.headers["cache-control"] == "no-store"


def test_control_characters_in_the_filters_are_a_clear_4xx(as_role: Client) -> None:
    # a NUL is refused for the whole query string at the edge (RefuseNul); other control
    # characters reach the filter's own check, which names the field
    nul = as_role("admin").get("/api/v1/audit", params={"actor": "a\x00b"})
    assert nul.status_code == 400, nul.text
    assert "NUL" in nul.json()["error"]["message"]
    answer = as_role("admin").get("/api/v1/audit", params={"action": "user.\n"})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == "action"
