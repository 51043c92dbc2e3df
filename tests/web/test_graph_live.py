"""The DAG page's graph follows its chosen run live: graph.json gives the run's task states
and whether it has finished, and the page tells live.js where to poll only while it has not.

A finished run comes from the shared world (webworld.py); a run that progresses lives in a
world of its own, driven by store updates, with ids made of markup to prove they are escaped.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from webworld import SECRET, WebWorld, publish_and_start

from drayman.auth import sessions, users
from drayman.config import Settings
from drayman.spec import DagSpec, TaskSpec
from drayman.store.engine import Store
from drayman.store.schema import dag_run, metadata, task_instance
from drayman.web.app import create_app

HOSTILE = '<img src=x onerror="alert(1)">'
UPSTREAM = "extract & <b>clean</b>"
RUN_ID = "run <script>"


def q(text: str) -> str:
    return quote(text, safe="")


def graph_src(page: str) -> str | None:
    """The data-graph-src of the page's graph, unescaped, or None when it has none."""
    found = re.search(r'<div class="scroll" id="graph"( data-graph-src="([^"]*)")?>', page)
    assert found, "the DAG page has no graph box (id=graph)"
    return html.unescape(found.group(2)) if found.group(1) else None


# -- a finished run, from the shared world ----------------------------------------------------


def test_finished_run_states_and_no_polling(world: WebWorld) -> None:
    viewer = world.client("viewer")  # bearer token: the endpoint takes either kind of auth
    answer = viewer.get("/dags/web_demo/graph.json", params={"run_id": world.done_run})
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store", "a stale cached state would stick"
    assert answer.json() == {
        "run_id": world.done_run,
        "state": "failed",
        "finished": True,
        "states": {"extract": "success", "load": "success", "fail_me": "failed"},
    }
    page = viewer.get("/dags/web_demo", params={"run_id": world.done_run}).text
    assert graph_src(page) is None, "a finished run's graph cannot change: nothing to poll"
    for task in ("extract", "load", "fail_me"):
        assert f'data-task="{task}"' in page, f"node {task} has no data-task for live.js"


def test_graph_json_needs_a_login(anonymous: TestClient, world: WebWorld) -> None:
    answer = anonymous.get(
        "/dags/web_demo/graph.json", params={"run_id": world.done_run}, follow_redirects=False
    )
    assert answer.status_code == 303, f"anonymous graph.json: {answer.status_code}"
    assert answer.headers["location"].startswith("/login?next="), answer.headers
    assert "states" not in answer.text, "an anonymous request saw the run's states"


@pytest.mark.parametrize(
    ("params", "status"),
    [({"run_id": "no-such-run"}, 404), ({}, 422)],
)
def test_graph_json_of_an_unknown_or_unnamed_run(
    world: WebWorld, params: dict[str, str], status: int
) -> None:
    answer = world.client("viewer").get("/dags/web_demo/graph.json", params=params)
    assert answer.status_code == status, f"graph.json {params}: {answer.status_code}"


# -- a run that progresses --------------------------------------------------------------------


@dataclass
class Live:
    client: TestClient
    store: Store
    run_pk: int

    @property
    def json_url(self) -> str:
        return f"/dags/{q(HOSTILE)}/graph.json?run_id={q(RUN_ID)}"

    def set_task(self, task_id: str, state: str, map_index: int = -1) -> None:
        with self.store.begin() as conn:
            conn.execute(
                update(task_instance)
                .where(
                    task_instance.c.dag_run_id == self.run_pk,
                    task_instance.c.task_id == task_id,
                    task_instance.c.map_index == map_index,
                )
                .values(state=state)
            )

    def set_run(self, state: str) -> None:
        with self.store.begin() as conn:
            conn.execute(update(dag_run).where(dag_run.c.id == self.run_pk).values(state=state))


@pytest.fixture
def live(tmp_path_factory: pytest.TempPathFactory, world: WebWorld) -> Iterator[Live]:
    """A DAG whose ids are markup, UPSTREAM >> HOSTILE, with one running run (per test:
    the tests move it on)."""
    root = tmp_path_factory.mktemp("graph-live")
    store = Store(f"sqlite:///{root / 'drayman.db'}")
    metadata.create_all(store.engine)
    now = store.now()
    spec = DagSpec(
        dag_id=HOSTILE,
        fileloc="live.py",
        tasks={
            UPSTREAM: TaskSpec(task_id=UPSTREAM, kind="python"),
            HOSTILE: TaskSpec(task_id=HOSTILE, kind="python", upstream=(UPSTREAM,)),
        },
    )
    with store.begin() as conn:
        pk = publish_and_start(conn, spec, RUN_ID, now, source="# live\n")
    users.create(store, world.passwords, "viewer", "correct horse battery", "viewer", now)
    settings = Settings(home=root / "home")
    app = create_app(settings, store, secret_key=SECRET, passwords=world.passwords)
    client = TestClient(app)
    user = users.get(store, "viewer")
    client.cookies.set("drayman_session", sessions.create(store, user, now).token)
    yield Live(client, store, pk)
    store.dispose()


def test_running_run_page_names_its_quoted_json_and_escapes_the_nodes(live: Live) -> None:
    page = live.client.get(f"/dags/{q(HOSTILE)}").text
    assert graph_src(page) == live.json_url, "the page must poll the chosen run's graph.json"
    assert HOSTILE not in page, "a task id went into the page unescaped"
    assert f'data-task="{html.escape(HOSTILE)}"' in page.replace("&#34;", "&quot;"), (
        "the hostile task's node carries its id escaped in data-task"
    )
    assert "<script>" not in page, "an inline script (the CSP forbids it) or a raw run id"


def test_states_follow_the_run_until_it_finishes(live: Live) -> None:
    def fetch() -> dict[str, object]:
        answer = live.client.get(live.json_url)
        assert answer.status_code == 200, f"graph.json: {answer.status_code} {answer.text[:300]}"
        body: dict[str, object] = answer.json()
        return body

    first = fetch()
    assert first["run_id"] == RUN_ID and first["state"] == "running", first
    assert first["finished"] is False, "a running run's graph must keep polling"
    assert first["states"] == {UPSTREAM: "pending", HOSTILE: "pending"}, first

    live.set_task(UPSTREAM, "success")
    live.set_task(HOSTILE, "running")
    assert fetch()["states"] == {UPSTREAM: "success", HOSTILE: "running"}, "no live states"

    live.set_task(HOSTILE, "failed")
    live.set_run("failed")
    last = fetch()
    assert last["finished"] is True and last["state"] == "failed", last
    assert last["states"] == {UPSTREAM: "success", HOSTILE: "failed"}, last
    page = live.client.get(f"/dags/{q(HOSTILE)}").text
    assert graph_src(page) is None, "the page polls a run that has finished"
