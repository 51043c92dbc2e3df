"""Every read endpoint of /api/v1, as a viewer: shapes, paging, filters, unknown objects."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from webworld import WebWorld

Client = Callable[[str], TestClient]


def test_dags_are_listed_with_schedule_timezone_and_next_run_in_local_time(as_role: Client) -> None:
    answer = as_role("viewer").get("/api/v1/dags")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["total"] == 2 and body["limit"] == 50 and body["offset"] == 0, body
    demo = next(d for d in body["items"] if d["dag_id"] == "web_demo")
    assert demo["timezone"] == "America/Los_Angeles" and demo["schedule"] == "0 3 * * *"
    assert demo["next_run_after_local"].endswith(("-08:00", "-07:00")), demo
    assert demo["next_run_after_local"][11:16] == "03:00", "the next run is 03:00 local time"


def test_dags_filter_by_tag_search_and_paused_and_page(as_role: Client) -> None:
    client = as_role("viewer")
    by_tag = client.get("/api/v1/dags", params={"tag": "other"}).json()
    assert [d["dag_id"] for d in by_tag["items"]] == ["web_other"], by_tag
    assert client.get("/api/v1/dags", params={"tag": "oth"}).json()["total"] == 0, (
        "tags match whole"
    )
    by_search = client.get("/api/v1/dags", params={"search": "DEMO"}).json()
    assert [d["dag_id"] for d in by_search["items"]] == ["web_demo"], by_search
    wildcard = client.get("/api/v1/dags", params={"search": "%"}).json()
    assert wildcard["total"] == 0, "a LIKE wildcard in the search is matched literally"
    paged = client.get("/api/v1/dags", params={"limit": 1, "offset": 1}).json()
    assert paged["total"] == 2 and [d["dag_id"] for d in paged["items"]] == ["web_other"], paged
    recent = client.get("/api/v1/dags", params={"recent_runs": 3, "search": "demo"}).json()
    assert recent["items"][0]["recent_runs"], "recent_runs=3 lists the DAG's newest runs"


def test_paging_limits_are_enforced(as_role: Client) -> None:
    client = as_role("viewer")
    for params in ({"limit": 0}, {"limit": 501}, {"offset": -1}, {"limit": "ten"}):
        answer = client.get("/api/v1/dags", params=params)
        assert answer.status_code == 422, f"{params}: {answer.status_code} {answer.text}"
        field = answer.json()["error"]["field"]
        assert field == next(iter(params)), f"{params}: the error names {field!r}"


def test_a_dag_shows_params_tasks_and_next_runs_local_and_utc(as_role: Client) -> None:
    body = as_role("viewer").get("/api/v1/dags/web_demo").json()
    assert body["params"]["rows"] == {
        "default": 5,
        "type": "integer",
        "description": "",
        "required": False,
    }, body["params"]
    assert {t["task_id"] for t in body["tasks"]} == {"extract", "load", "fail_me"}
    assert len(body["next_runs"]) == 5
    first = body["next_runs"][0]
    assert first["run_after"][11:16] == "03:00" and first["run_after_utc"].endswith("+00:00")


def test_unknown_objects_are_404_with_an_error_body(world: WebWorld, as_role: Client) -> None:
    client = as_role("viewer")
    for path in (
        "/api/v1/dags/nope",
        "/api/v1/dags/nope/runs",
        "/api/v1/dags/nope/code",
        "/api/v1/dags/web_demo/runs/nope",
        "/api/v1/dags/web_demo/runs/nope/tasks",
        f"/api/v1/dags/web_demo/runs/{world.done_run}/tasks/nope/tries",
        "/api/v1/dags/web_demo/code?version=0000",
        "/api/v1/tries/999999",
        "/api/v1/tries/999999/log",
    ):
        answer = client.get(path)
        assert answer.status_code == 404, f"{path}: {answer.status_code} {answer.text}"
        assert answer.json()["error"]["code"] == "not_found", f"{path}: {answer.text}"


def test_code_is_served_at_the_newest_and_a_named_version(as_role: Client) -> None:
    client = as_role("viewer")
    newest = client.get("/api/v1/dags/web_demo/code").json()
    assert '"web_demo"' in newest["source"] and newest["versions"], newest
    named = client.get(
        "/api/v1/dags/web_demo/code", params={"version": newest["bundle_version"]}
    ).json()
    assert named["source"] == newest["source"]


def test_import_errors_name_the_file(as_role: Client) -> None:
    body = as_role("viewer").get("/api/v1/import-errors").json()
    assert body["total"] == 1, body
    error = body["items"][0]
    assert error["fileloc"] == "broken.py" and "no_such_module_for_web_tests" in error["message"]


def test_runs_list_filters_by_state_and_date(world: WebWorld, as_role: Client) -> None:
    client = as_role("viewer")
    failed = client.get("/api/v1/dags/web_demo/runs", params={"state": "failed"}).json()
    assert world.done_run in [r["run_id"] for r in failed["items"]], failed
    none = client.get("/api/v1/dags/web_demo/runs", params={"since": "2999-01-01"}).json()
    assert none["total"] == 0 and none["items"] == [], none
    past = client.get("/api/v1/dags/web_demo/runs", params={"until": "2000-01-01T00:00:00Z"})
    assert past.json()["total"] == 0, past.text
    bad = client.get("/api/v1/dags/web_demo/runs", params={"state": "exploded"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "state", bad.text
    bad_date = client.get("/api/v1/dags/web_demo/runs", params={"since": "yesterday"})
    assert bad_date.status_code == 422 and bad_date.json()["error"]["field"] == "since"


def test_a_run_its_task_instances_tries_and_log(world: WebWorld, as_role: Client) -> None:
    client = as_role("viewer")
    base = f"/api/v1/dags/web_demo/runs/{world.done_run}"
    run = client.get(base).json()
    assert run["state"] == "failed" and run["conf"] == {"rows": 3} and run["params"]["rows"] == 3
    tis = {ti["task_id"]: ti for ti in client.get(f"{base}/tasks").json()["items"]}
    assert {k: v["state"] for k, v in tis.items()} == {
        "extract": "success",
        "load": "success",
        "fail_me": "failed",
    }
    tries = client.get(f"{base}/tasks/fail_me/tries").json()
    assert tries["total"] == 1 and tries["items"][0]["state"] == "failed", tries
    try_id = tries["items"][0]["try_id"]
    detail = client.get(f"/api/v1/tries/{try_id}").json()
    assert (detail["dag_id"], detail["run_id"], detail["task_id"]) == (
        "web_demo",
        world.done_run,
        "fail_me",
    )
    log = client.get(f"/api/v1/tries/{try_id}/log").json()
    assert log["finished"] and log["source"] in {"database", "file"}, log
    text = "".join(chunk["text"] for chunk in log["items"])
    assert "meant to fail" in text, f"the log lacks the task's error: {text[:500]}"
    after = client.get(
        f"/api/v1/tries/{try_id}/log", params={"after_seq": log["next_after_seq"]}
    ).json()
    assert after["items"] == [], "nothing follows the last chunk"


def test_workers_and_queues(as_role: Client) -> None:
    client = as_role("viewer")
    workers = client.get("/api/v1/workers").json()
    assert workers["total"] >= 1 and workers["items"][0]["executor"] == "local", workers
    queues = client.get("/api/v1/queues").json()
    assert set(queues) == {"items", "total", "limit", "offset"}, queues


def test_health_needs_no_auth_and_reports_a_missing_scheduler(anonymous: TestClient) -> None:
    for path in ("/health", "/api/v1/health"):
        answer = anonymous.get(path)
        assert answer.status_code == 503, f"{path}: no scheduler runs, so not healthy"
        assert answer.json() == {
            "database": "ok",
            "scheduler": {"alive": False, "heartbeat_age_s": None},
        }
