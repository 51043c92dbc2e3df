"""The HTML pages: each renders for each role, escapes what it shows, and refuses what a
role may not do or a form without its CSRF token. Runs on the shared world (webworld.py);
a test that changes something makes its own run or undoes its change."""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import literal, select
from webworld import ROLES, SECRET, WebWorld, _run_to_the_end, csrf_of, publish_and_start

from drayman.auth import sessions, users
from drayman.config import Settings
from drayman.spec import DagSpec, ParsedDag, TaskSpec
from drayman.states import RunType
from drayman.store import dags as dag_store
from drayman.store import runs as run_store
from drayman.store.engine import Store
from drayman.store.schema import metadata, task_instance, task_try
from drayman.web.app import create_app

MAX_PAGE_BYTES = 300_000
HOSTILE = "<img src=x onerror=alert(1)>"


def a_try_id(client: TestClient, run_url: str) -> int:
    found = re.search(r'href="/tries/(\d+)"', client.get(run_url).text)
    assert found, f"{run_url} links no try"
    return int(found.group(1))


def run_count(world: WebWorld) -> int:
    with world.store.read() as conn:
        return len(run_store.list_runs(conn, dag_id="web_demo", limit=1000))


@pytest.fixture(scope="module")
def logged_in(world: WebWorld) -> dict[str, TestClient]:
    """Browser-like clients (session cookie, CSRF needed on writes), one per role."""
    return {role: world.client(role, login=True) for role in ROLES}


@pytest.mark.parametrize("role", ROLES)
def test_every_page_renders_for_each_role(
    world: WebWorld, logged_in: dict[str, TestClient], role: str
) -> None:
    client = logged_in[role]
    run_url = f"/dags/web_demo/runs/{world.done_run}"
    pages = {
        "/": "web_demo",
        "/dags/web_demo": "Grid",
        run_url: "Gantt",
        f"/tries/{a_try_id(client, run_url)}": "extracting",
        "/workers": "Queues",
    }
    for url, expected in pages.items():
        answer = client.get(url)
        assert answer.status_code == 200, f"{role} GET {url}: {answer.status_code} {answer.text}"
        assert expected in answer.text, f"{role} GET {url}: no {expected!r} on the page"
        assert len(answer.content) < MAX_PAGE_BYTES, f"{url} is {len(answer.content)} bytes"
        assert "<script>" not in answer.text, f"{url} has an inline script (the CSP forbids it)"


def test_dags_page_shows_schedule_next_run_recent_runs_tags_and_import_errors(
    logged_in: dict[str, TestClient],
) -> None:
    page = logged_in["viewer"].get("/").text
    assert "broken.py" in page and "no_such_module_for_web_tests" in page, "import error shown"
    assert "America/Los_Angeles" in page, "the schedule is described in the DAG's timezone"
    assert re.search(r"\d{4}-\d\d-\d\d 03:00 P[SD]T", page), "next run in local time"
    assert "UTC" in page, "next run in UTC too"
    assert 'class="dot s-failed"' in page, "the recent run's state is drawn"
    filtered = logged_in["viewer"].get("/", params={"tag": "other"}).text
    assert "web_other" in filtered and "/dags/web_demo" not in filtered, "the tag filter works"
    searched = logged_in["viewer"].get("/", params={"q": "DEMO"}).text
    assert "/dags/web_demo" in searched and "/dags/web_other" not in searched


def test_dag_page_has_grid_graph_code_next_runs_durations_and_run_list(
    world: WebWorld, logged_in: dict[str, TestClient]
) -> None:
    page = logged_in["viewer"].get("/dags/web_demo").text
    assert re.search(r"<a class=F href=/tries/\d+></a>", page), "a failed cell links its try"
    assert re.search(r"<a class=S href=/tries/\d+></a>", page), "a successful cell too"
    assert '<svg class="graph"' in page and "fail_me" in page, "the graph is inline SVG"
    assert "def extract(ctx):" in page, "the code at the run's bundle version"
    assert '<svg class="chart"' in page, "the task-duration chart"
    assert f">{world.done_run}</a>" in page, "the run list"
    failed_only = logged_in["viewer"].get("/dags/web_demo", params={"state": "success"}).text
    assert "No runs match" in failed_only, "the run list filters by state"


def test_grid_shows_at_most_fifty_runs(logged_in: dict[str, TestClient]) -> None:
    answer = logged_in["viewer"].get("/dags/web_demo/grid.json", params={"runs": 5000})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert len(body["runs"]) <= 50 and body["tasks"] == ["extract", "load", "fail_me"], body
    cell = body["runs"][0]["cells"][0]
    assert cell["state"] == "success" and cell["url"].startswith("/tries/"), cell


def test_pages_need_a_login(anonymous: TestClient) -> None:
    """Every page, and the grid's JSON behind one, sends a visitor to the login form."""
    for url in ("/", "/dags/web_demo", "/workers", "/tries/1", "/dags/web_demo/grid.json"):
        answer = anonymous.get(url, follow_redirects=False)
        assert answer.status_code == 303, f"anonymous GET {url}: {answer.status_code}"
        assert answer.headers["location"].startswith("/login?next="), answer.headers


def test_viewer_sees_no_action_forms(world: WebWorld, logged_in: dict[str, TestClient]) -> None:
    run_url = f"/dags/web_demo/runs/{world.done_run}"
    for url in ("/", "/dags/web_demo", run_url):
        viewer = logged_in["viewer"].get(url).text
        operator = logged_in["operator"].get(url).text
        for action in ("/pause", "/trigger", "/clear", "/mark"):
            assert f'{action}"' not in viewer, f"a viewer sees a {action} action on {url}"
        assert re.search(r'/(pause|clear)"', operator), f"an operator sees actions on {url}"
    assert '/clear"' in logged_in["operator"].get(run_url).text


def test_viewer_cannot_trigger_pause_clear_or_mark(
    world: WebWorld, logged_in: dict[str, TestClient]
) -> None:
    viewer = logged_in["viewer"]
    token = csrf_of(viewer.get("/").text)  # the logout form carries it
    before = run_count(world)
    run = f"/dags/web_demo/runs/{world.done_run}"
    posts = {
        "/dags/web_demo/trigger": {"param.rows": "1"},
        "/dags/web_demo/pause": {"paused": "1"},
        f"{run}/clear": {"task_id": "fail_me", "confirmed": "1"},
        f"{run}/mark": {"task_id": "fail_me", "state": "success", "confirmed": "1"},
    }
    for url, form in posts.items():
        answer = viewer.post(url, data={**form, "csrf_token": token}, follow_redirects=False)
        assert answer.status_code == 403, f"viewer POST {url}: {answer.status_code}"
    assert viewer.get("/dags/web_demo/trigger").status_code == 403
    assert run_count(world) == before, "a refused trigger created a run"
    with world.store.read() as conn:
        assert not dag_store.get_dag(conn, "web_demo").is_paused, "a refused pause paused"


def test_forms_without_the_csrf_token_are_refused(
    world: WebWorld, logged_in: dict[str, TestClient]
) -> None:
    operator = logged_in["operator"]
    before = run_count(world)
    for token in (None, "0" * 64):
        form = {"param.rows": "2"} | ({"csrf_token": token} if token else {})
        answer = operator.post("/dags/web_demo/trigger", data=form, follow_redirects=False)
        assert answer.status_code == 403, f"trigger with csrf {token!r}: {answer.status_code}"
        assert "CSRF" in answer.text, answer.text
    assert run_count(world) == before, "a form without its CSRF token created a run"


def test_operator_triggers_with_a_conf_form_generated_from_params(
    world: WebWorld, logged_in: dict[str, TestClient]
) -> None:
    operator = logged_in["operator"]
    form_page = operator.get("/dags/web_demo/trigger").text
    assert 'name="param.rows"' in form_page and 'type="number"' in form_page, form_page
    token = csrf_of(form_page)
    bad = operator.post("/dags/web_demo/trigger", data={"csrf_token": token, "param.rows": "many"})
    assert bad.status_code == 422 and "expected an integer" in bad.text, bad.text
    good = operator.post(
        "/dags/web_demo/trigger",
        data={"csrf_token": token, "param.rows": "7", "param.label": "from the web"},
        follow_redirects=False,
    )
    assert good.status_code == 303, good.text
    run_id = good.headers["location"].rsplit("/", 1)[1]
    from urllib.parse import unquote

    with world.store.read() as conn:
        run = run_store.get_run(conn, "web_demo", unquote(run_id))
    assert json.loads(run.conf) == {"rows": 7, "label": "from the web"}, run.conf
    assert run.triggered_by == "operator (web)", run.triggered_by


def test_pause_and_unpause_from_the_dags_page(
    world: WebWorld, logged_in: dict[str, TestClient]
) -> None:
    operator = logged_in["operator"]
    token = csrf_of(operator.get("/").text)
    for flag, expected in (("1", True), ("0", False)):
        answer = operator.post(
            "/dags/web_other/pause",
            data={"csrf_token": token, "paused": flag, "next": "/"},
            follow_redirects=False,
        )
        assert answer.status_code == 303 and answer.headers["location"] == "/", answer.text
        with world.store.read() as conn:
            assert dag_store.get_dag(conn, "web_other").is_paused is expected


def test_clear_a_failed_task_asks_first_then_clears(
    world: WebWorld, logged_in: dict[str, TestClient]
) -> None:
    run_id = _run_to_the_end(world.settings, world.store, "web_demo", "pages_clear")
    operator = logged_in["operator"]
    run_url = f"/dags/web_demo/runs/{run_id}"
    token = csrf_of(operator.get(run_url).text)
    form = {"csrf_token": token, "task_id": "fail_me", "only_failed": "1"}
    asked = operator.post(f"{run_url}/clear", data=form)
    assert asked.status_code == 200 and "Yes, do it" in asked.text, asked.text
    assert "<li>fail_me</li>" in asked.text, "the confirmation lists what would change"
    with world.store.read() as conn:
        assert run_store.get_run(conn, "web_demo", run_id).state == "failed", "asking changed"
    done = operator.post(
        f"{run_url}/clear", data={**form, "confirmed": "1"}, follow_redirects=False
    )
    assert done.status_code == 303 and done.headers["location"] == run_url, done.text
    with world.store.read() as conn:
        run = run_store.get_run(conn, "web_demo", run_id)
        states = {
            r.task_id: r.state
            for r in conn.execute(
                task_instance.select().where(task_instance.c.dag_run_id == run.id)
            )
        }
    assert run.state == "running" and states["fail_me"] == "pending", (run.state, states)
    assert states["extract"] == "success", "only the failed task was cleared"


def test_try_page_pages_and_follows_the_log(
    world: WebWorld, logged_in: dict[str, TestClient]
) -> None:
    client = logged_in["viewer"]
    try_id = a_try_id(client, f"/dags/web_demo/runs/{world.done_run}")
    page = client.get(f"/tries/{try_id}").text
    assert "extracting &lt;b&gt;rows&lt;/b&gt;" in page, "the log line is shown, escaped"
    assert 'data-follow="0"' in page, "a finished try's log is not followed"
    tail = client.get(f"/tries/{try_id}/log.json", params={"pos": 0, "source": "file"}).json()
    assert tail["ended"] and tail["source"] == "file" and "extracting" in tail["text"], tail
    after = client.get(f"/tries/{try_id}/log.json", params={"pos": tail["pos"], "source": "file"})
    assert after.json()["text"] == "", "nothing follows the end of the log"


def test_run_live_json_renders_the_changing_part(
    world: WebWorld, logged_in: dict[str, TestClient]
) -> None:
    answer = logged_in["viewer"].get(f"/dags/web_demo/runs/{world.done_run}/live.json")
    body = answer.json()
    assert answer.status_code == 200 and body["unfinished"] is False, body
    assert '<svg class="gantt"' in body["html"] and 'class="queued"' in body["html"], body


def test_unknown_objects_are_404_pages(logged_in: dict[str, TestClient]) -> None:
    client = logged_in["viewer"]
    for url in ("/dags/nope", "/dags/web_demo/runs/nope", "/tries/999999"):
        answer = client.get(url)
        assert answer.status_code == 404, f"GET {url}: {answer.status_code}"
        assert "text/html" in answer.headers["content-type"], answer.headers


# -- hostile ids: a world of its own, so the shared one keeps its two DAGs -------------------


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, world: WebWorld) -> TestClient:
    root = tmp_path_factory.mktemp("hostile")
    store = Store(f"sqlite:///{root / 'drayman.db'}")
    metadata.create_all(store.engine)
    now = store.now()
    spec = DagSpec(
        dag_id=HOSTILE,
        fileloc="evil.py",
        description=f"<script>alert('d')</script>{HOSTILE}",
        tags=(HOSTILE,),
        tasks={HOSTILE: TaskSpec(task_id=HOSTILE, kind="python")},
    )
    with store.begin() as conn:
        publish_and_start(conn, spec, HOSTILE, now, conf={"x": HOSTILE}, triggered_by=HOSTILE)
        ti = conn.execute(task_instance.select()).first()
        assert ti is not None
        conn.execute(
            task_try.insert().values(
                task_instance_id=ti.id,
                try_number=1,
                state="failed",
                hostname=HOSTILE,
                queued_at=now,
                start_date=now,
                end_date=now,
                error=HOSTILE,
                log_path="evil.log",
            )
        )
    settings = Settings(home=root / "home")
    (settings.logs_folder).mkdir(parents=True)
    (settings.logs_folder / "evil.log").write_text(f"{HOSTILE}\n")
    users.create(store, world.passwords, "admin", "correct horse battery", "admin", now)
    app = create_app(settings, store, secret_key=SECRET, passwords=world.passwords)
    client = TestClient(app)
    user = users.get(store, "admin")
    client.cookies.set("drayman_session", sessions.create(store, user, now).token)
    return client


def test_hostile_ids_conf_and_log_are_shown_not_run(hostile: TestClient) -> None:
    quoted = "%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E"
    pages = ["/", f"/dags/{quoted}", f"/dags/{quoted}/runs/{quoted}", "/tries/1"]
    for url in pages:
        answer = hostile.get(url)
        assert answer.status_code == 200, f"GET {url}: {answer.status_code} {answer.text[:500]}"
        assert HOSTILE not in answer.text, f"{url} contains the raw hostile markup"
        assert "<script>alert" not in answer.text, f"{url} contains a raw script"
        assert html.escape(HOSTILE, quote=False) in answer.text.replace("&#34;", '"').replace(
            "&#39;", "'"
        ), f"{url} does not show the hostile text escaped"
    grid = hostile.get(f"/dags/{quoted}/grid.json").json()
    assert grid["runs"][0]["url"] == f"/dags/{quoted}/runs/{quoted}", "links quote the ids"


def test_hostile_log_is_followed_as_text(hostile: TestClient, tmp_path: Path) -> None:
    body = hostile.get("/tries/1/log.json", params={"pos": 0, "source": "file"}).json()
    assert body["text"] == f"{HOSTILE}\n", "the JSON carries the text; live.js sets textContent"


def test_a_dag_page_of_100_tasks_and_50_runs_stays_under_300_kb(
    tmp_path: Path, world: WebWorld
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'big.db'}")
    metadata.create_all(store.engine)
    now = store.now()
    names = [f"task_with_a_longish_name_{i:03d}" for i in range(100)]
    tasks = {
        name: TaskSpec(task_id=name, kind="python", upstream=(names[i - 1],) if i % 10 else ())
        for i, name in enumerate(names)
    }
    spec = DagSpec(dag_id="big", fileloc="big.py", tasks=tasks)
    with store.begin() as conn:
        dag_store.record_parse(
            conn, bundle_version="v1", dags=[ParsedDag(spec, "# big\n" * 200)], errors=[], now=now
        )
        for day in range(60):
            when = now - timedelta(days=day)
            pk = run_store.create_run(
                conn,
                dag_id="big",
                run_id=run_store.run_id_for(RunType.SCHEDULED, when),
                run_type=RunType.SCHEDULED,
                bundle_version="v1",
                logical_date=when,
                data_interval_start=when,
                data_interval_end=when,
                run_after=when,
                conf={},
                params={},
                triggered_by="scheduler",
                now=now,
            )
            run_store.start_run(conn, run_store.get_run_by_id(conn, pk), spec, now)
        conn.execute(task_instance.update().values(state="success", start_date=now, end_date=now))
        conn.execute(
            task_try.insert().from_select(
                ["task_instance_id", "try_number", "state", "queued_at", "log_path"],
                select(
                    task_instance.c.id,
                    literal(1),
                    literal("success"),
                    literal(now.replace(tzinfo=None)),
                    literal(""),
                ),
            )
        )
    users.create(store, world.passwords, "viewer", "correct horse battery", "viewer", now)
    app = create_app(Settings(home=tmp_path / "home"), store, secret_key=SECRET)
    client = TestClient(app)
    client.cookies.set(
        "drayman_session", sessions.create(store, users.get(store, "viewer"), now).token
    )
    answer = client.get("/dags/big", params={"runs": 50})
    assert answer.status_code == 200, answer.text[:500]
    assert answer.text.count("href=/tries/") == 5000, "50 runs x 100 tasks, each a link"
    assert len(answer.content) < MAX_PAGE_BYTES, f"the DAG page is {len(answer.content)} bytes"
    store.dispose()
