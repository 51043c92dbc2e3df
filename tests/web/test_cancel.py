"""Cancelling a running try from the API and the pages: who may, what it changes, what it
refuses. The process side (the executor killing the try) is in test_store_actions.py and the
Celery tests; here the try is made running in the store, as a worker would have."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy import select
from webworld import WebWorld, csrf_of, new_run

from drayman.states import StateChange, TIState, TryState
from drayman.store import dags as dag_store
from drayman.store import runs as run_store
from drayman.store import task_instances, tries
from drayman.store.schema import task_instance, task_try
from drayman.workloads import TryStarted

Client = Callable[[str], TestClient]


def running_try(world: WebWorld, run_id: str, task_id: str = "extract") -> int:
    """A new run of web_demo whose `task_id` runs (as if a worker had claimed it); its try id."""
    new_run(world, run_id)
    store = world.store
    with store.begin() as conn:
        run = run_store.get_run(conn, "web_demo", run_id)
        run_store.start_run(
            conn, run, dag_store.load_spec(conn, "web_demo", run.bundle_version), store.now()
        )
        row = conn.execute(
            select(task_instance).where(
                task_instance.c.dag_run_id == run.id, task_instance.c.task_id == task_id
            )
        ).one()
        change = StateChange(row.id, TIState.PENDING, TIState.SCHEDULED)
        assert task_instances.apply_changes(conn, [change], store.now()) == 1
        row = conn.execute(select(task_instance).where(task_instance.c.id == row.id)).one()
        (new,) = tries.create_tries(
            conn, [row], log_paths=["x.log"], worker_id=None, now=store.now()
        )
        assert tries.record_started(conn, TryStarted(new.try_id, "worker-1", 4242, store.now()))
    return new.try_id


def try_and_ti_state(world: WebWorld, try_id: int) -> tuple[str, str, str]:
    with world.store.read() as conn:
        row = conn.execute(
            select(task_try.c.state, task_try.c.error, task_instance.c.state.label("ti"))
            .join(task_instance, task_instance.c.id == task_try.c.task_instance_id)
            .where(task_try.c.id == try_id)
        ).one()
    return row.state, row.ti, row.error or ""


def test_an_operator_cancels_a_running_try_through_the_api(
    world: WebWorld, as_role: Client
) -> None:
    try_id = running_try(world, "api-cancel")
    url = "/api/v1/dags/web_demo/runs/api-cancel/tasks/extract/cancel"

    refused = as_role("viewer").post(url, json={})
    assert refused.status_code == 403, refused.text
    dry = as_role("operator").post(url, json={"dry_run": True})
    assert dry.json()["task_instances"] == [{"task_id": "extract", "map_index": -1}], dry.text
    assert try_and_ti_state(world, try_id)[:2] == (TryState.RUNNING, TIState.RUNNING)

    done = as_role("operator").post(url)
    assert done.status_code == 200, done.text
    state, ti_state, error = try_and_ti_state(world, try_id)
    assert (state, ti_state) == (TryState.FAILED, TIState.FAILED)
    assert "cancelled by operator" in error, error

    again = as_role("operator").post(url, json={})
    assert again.status_code == 409, again.text
    assert "not queued or running" in again.json()["error"]["message"]


def test_cancel_refuses_bad_input_with_4xx(world: WebWorld, as_role: Client) -> None:
    base = f"/api/v1/dags/web_demo/runs/{world.done_run}/tasks"
    client = as_role("operator")
    cases = {
        f"{base}/nope/cancel": ({}, 404),
        f"{base}/extract/cancel": ({"map_index": "x"}, 422),
        f"{base}/load/cancel": ({"map_index": -5}, 422),
        f"{base}/fail_me/cancel": ({"surprise": True}, 422),
    }
    for url, (body, status) in cases.items():
        answer = client.post(url, json=body)
        assert answer.status_code == status, f"{url} {body}: {answer.status_code} {answer.text}"
        assert answer.json()["error"]["message"], answer.text


def test_the_try_page_offers_cancel_to_operators_and_asks_first(world: WebWorld) -> None:
    try_id = running_try(world, "page-cancel")
    viewer = world.client("viewer", login=True)
    operator = world.client("operator", login=True)
    assert "Cancel this try" not in viewer.get(f"/tries/{try_id}").text
    page = operator.get(f"/tries/{try_id}").text
    assert "Cancel this try" in page, "an operator sees no cancel button on a running try"

    run_url = "/dags/web_demo/runs/page-cancel"
    form = {"csrf_token": csrf_of(page), "task_id": "extract", "map_index": "-1"}
    refused = viewer.post(f"{run_url}/cancel", data={**form, "confirmed": "1"})
    assert refused.status_code == 403, refused.text
    asked = operator.post(f"{run_url}/cancel", data={**form, "next": f"/tries/{try_id}"})
    assert asked.status_code == 200 and "Yes, do it" in asked.text, asked.text
    assert try_and_ti_state(world, try_id)[0] == TryState.RUNNING, "asking changed the try"

    done = operator.post(
        f"{run_url}/cancel",
        data={**form, "next": f"/tries/{try_id}", "confirmed": "1"},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == f"/tries/{try_id}", done.text
    assert try_and_ti_state(world, try_id)[:2] == (TryState.FAILED, TIState.FAILED)
    assert "Cancel this try" not in operator.get(f"/tries/{try_id}").text
