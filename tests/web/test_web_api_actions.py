"""The API's writes: trigger, pause, clear, mark, each allowed by role and checked on input."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from webworld import WebWorld, new_run

Client = Callable[[str], TestClient]


def _writes(run_id: str) -> list[tuple[str, str, dict[str, object]]]:
    base = f"/api/v1/dags/web_demo/runs/{run_id}"
    return [
        ("POST", "/api/v1/dags/web_demo/runs", {"conf": {}, "run_id": f"{run_id}-t"}),
        ("PATCH", "/api/v1/dags/web_other", {"paused": False}),
        ("POST", f"{base}/clear", {"dry_run": True}),
        ("POST", f"{base}/tasks/extract/clear", {"dry_run": True}),
        ("POST", f"{base}/tasks/extract/mark", {"state": "success", "dry_run": True}),
    ]


def test_a_viewer_can_neither_trigger_pause_clear_nor_mark(
    world: WebWorld, as_role: Client
) -> None:
    for method, path, body in _writes(world.done_run):
        answer = as_role("viewer").request(method, path, json=body)
        assert answer.status_code == 403, f"viewer {method} {path}: {answer.status_code}"
        assert answer.json()["error"]["code"] == "forbidden", answer.text


@pytest.mark.parametrize("role", ["operator", "admin"])
def test_operators_and_admins_may_do_every_write(
    world: WebWorld, as_role: Client, role: str
) -> None:
    for method, path, body in _writes(f"{world.done_run}-{role}"):
        if "/runs/" in path:
            path = path.replace(f"{world.done_run}-{role}", world.done_run)
        else:
            body = {**body, **({"run_id": f"by-{role}"} if "run_id" in body else {})}
        answer = as_role(role).request(method, path, json=body)
        assert answer.status_code in {200, 201}, f"{role} {method} {path}: {answer.text}"


def test_trigger_validates_conf_against_params_and_names_the_field(as_role: Client) -> None:
    client = as_role("operator")
    bad = client.post("/api/v1/dags/web_demo/runs", json={"conf": {"rows": "many"}})
    assert bad.status_code == 422, bad.text
    assert bad.json()["error"] == {
        "code": "invalid_conf",
        "message": bad.json()["error"]["message"],
        "field": "conf.rows",
    }
    assert "expected integer" in bad.json()["error"]["message"]
    made = client.post(
        "/api/v1/dags/web_demo/runs", json={"conf": {"rows": 7}, "run_id": "conf-ok"}
    )
    assert made.status_code == 201, made.text
    run = made.json()
    assert (run["run_id"], run["state"], run["params"]["rows"]) == ("conf-ok", "queued", 7)
    assert run["triggered_by"] == "operator (web)"
    again = client.post("/api/v1/dags/web_demo/runs", json={"run_id": "conf-ok"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict", again.text


def test_trigger_refuses_bad_bodies_with_4xx(as_role: Client) -> None:
    client = as_role("operator")
    cases = [
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400),
        ({"json": {"conf": []}}, 422),
        ({"json": {"conf": {}, "dag_id": "web_other"}}, 422),  # the URL alone names the DAG
        ({"json": {"run_id": "a/b"}}, 422),
        ({"json": {"run_id": 5}}, 422),
    ]
    for kwargs, status in cases:
        answer = client.post("/api/v1/dags/web_demo/runs", **kwargs)  # type: ignore[arg-type]
        assert answer.status_code == status, f"{kwargs}: {answer.status_code} {answer.text}"
        assert set(answer.json()["error"]) == {"code", "message", "field"}, answer.text
    unknown = client.post("/api/v1/dags/no_such_dag/runs", json={})
    assert unknown.status_code == 404, unknown.text


@pytest.mark.parametrize(
    "conf",
    [{f"k{i:05d}": 1 for i in range(600)}, {"k" * 5000: 1}],
    ids=["600 keys", "one 5000-char key"],
)
def test_a_conf_the_checks_accept_is_triggered_whatever_its_keys(
    as_role: Client, conf: dict[str, int]
) -> None:
    """Its audit row keeps a bounded summary of the keys; it never turns the trigger into a 500."""
    run_id = f"keys-{len(conf)}-{len(next(iter(conf)))}"
    made = as_role("operator").post(
        "/api/v1/dags/web_demo/runs", json={"conf": conf, "run_id": run_id}
    )
    assert made.status_code == 201, made.text[:300]


def test_pause_and_unpause(as_role: Client) -> None:
    client = as_role("operator")
    paused = client.patch("/api/v1/dags/web_other", json={"paused": True})
    assert paused.status_code == 200 and paused.json()["is_paused"] is True, paused.text
    listed = client.get("/api/v1/dags", params={"paused": True}).json()
    assert [d["dag_id"] for d in listed["items"]] == ["web_other"], listed
    unpaused = client.patch("/api/v1/dags/web_other", json={"paused": False})
    assert unpaused.json()["is_paused"] is False
    wrong = client.patch("/api/v1/dags/web_other", json={"paused": "maybe"})
    assert wrong.status_code == 422 and wrong.json()["error"]["field"] == "paused", wrong.text


def test_clear_and_mark_change_a_started_run(world: WebWorld, as_role: Client) -> None:
    client = as_role("operator")
    base = f"/api/v1/dags/web_demo/runs/{world.done_run}"
    dry = client.post(f"{base}/tasks/fail_me/clear", json={"only_failed": True, "dry_run": True})
    assert dry.json()["task_instances"] == [{"task_id": "fail_me", "map_index": -1}], dry.text
    marked = client.post(f"{base}/tasks/fail_me/mark", json={"state": "failed"})
    assert marked.json()["task_instances"] == [], "fail_me is failed already: nothing to mark"
    wrong = client.post(f"{base}/tasks/fail_me/mark", json={"state": "running"})
    assert wrong.status_code == 422 and wrong.json()["error"]["field"] == "state", wrong.text
    unknown = client.post(f"{base}/tasks/no_task/clear", json={})
    assert unknown.status_code == 404, unknown.text


def test_clearing_a_run_that_has_not_started_is_a_clear_error(
    world: WebWorld, as_role: Client
) -> None:
    run_id = new_run(world, "not-started")
    answer = as_role("operator").post(f"/api/v1/dags/web_demo/runs/{run_id}/clear", json={})
    assert 400 <= answer.status_code < 500, f"{answer.status_code}: {answer.text}"
