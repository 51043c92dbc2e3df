"""The world the web tests share (built once per session by conftest.py): one web app
on a migrated SQLite store: a parsed DAG folder, one
finished run made by a real scheduler and local executor (tries, logs), one import error, a
user and an API token of each role, and `client(role)` to call the app as that user.

Tests share this world, so a test that changes it makes its own run (unique run ids) and
leaves what others read alone. `drayman.store.history` runs on every database in
test_api_databases.py.
"""

from __future__ import annotations

import re
import textwrap
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Connection

from drayman import run_creation
from drayman.auth import tokens, users
from drayman.auth.passwords import Passwords
from drayman.config import Settings
from drayman.dag_processor.processor import DagProcessor
from drayman.executors.local import LocalExecutor
from drayman.scheduler.loop import Scheduler
from drayman.spec import DagSpec, ParsedDag
from drayman.states import RUN_FINISHED, RunType
from drayman.store import dags as dag_store
from drayman.store import runs as run_store
from drayman.store.engine import Store
from drayman.web.app import create_app

PASSWORD = "correct horse battery"
SECRET = "test-secret-key-" + "x" * 40
ROLES = ("viewer", "operator", "admin")

DEMO_DAG = """
from drayman import DAG, Param, task

with DAG(
    "web_demo",
    schedule="0 3 * * *",
    timezone="America/Los_Angeles",
    start_date="2026-01-01",
    params={"rows": Param(5, type="integer"), "label": Param("x", type="string")},
    tags=["web", "<b>bold</b>"],
    description="<script>alert('description')</script>",
):

    @task
    def extract(ctx):
        print("extracting <b>rows</b>", ctx.params["rows"])
        return 1

    @task
    def load(n):
        print("loading", n)

    @task
    def fail_me():
        raise RuntimeError("meant to fail")

    load(extract()) >> fail_me()
"""

OTHER_DAG = """
from drayman import DAG, task

with DAG("web_other", schedule=None, tags=["other"], params={"limit": 10}):

    @task
    def only():
        return None
"""

BROKEN_DAG = "from drayman import DAG\nimport no_such_module_for_web_tests\n"


@dataclass
class WebWorld:
    settings: Settings
    store: Store
    app: FastAPI
    passwords: Passwords
    tokens: dict[str, str]  # role -> API token
    done_run: str  # a finished run of web_demo: extract, load succeeded; fail_me failed

    def client(self, role: str | None = None, *, login: bool = False) -> TestClient:
        """A client acting as the user of `role`: by bearer token, or with `login` by the
        session cookie of a real login (then unsafe requests need the CSRF token)."""
        client = TestClient(self.app, base_url="http://testserver")
        if role is None:
            return client
        if login:
            answer = client.post(
                "/login",
                data={"username": role, "password": PASSWORD, "next": "/"},
                follow_redirects=False,
            )
            assert answer.status_code == 303, f"login as {role} failed: {answer.text[:300]}"
        else:
            client.headers["Authorization"] = f"Bearer {self.tokens[role]}"
        return client


def build_world(root: Path) -> WebWorld:
    """Parse the DAGs, make the users and tokens, run one DAG run to its end, build the app."""
    settings = Settings(
        home=root / "home",
        dags_folder=root / "dags",
        database_url=f"sqlite:///{root / 'drayman.db'}",
        parallelism=2,
        heartbeat_interval_s=0.2,
        heartbeat_timeout_s=5,
        scheduler_poll_s=0.2,
        parse_timeout_s=30,
    )
    settings.dags_folder.mkdir(parents=True)
    for name, source in (("demo.py", DEMO_DAG), ("other.py", OTHER_DAG), ("broken.py", BROKEN_DAG)):
        (settings.dags_folder / name).write_text(textwrap.dedent(source))
    store = Store(settings.effective_database_url)
    store.migrate()
    processor = DagProcessor(settings, store)
    assert processor.tick() is not None, f"the DAG folder was not published: {processor.problem}"
    passwords = Passwords(memory_kib=256, time_cost=1, parallelism=1)
    made = {}
    for role in ROLES:
        users.create(store, passwords, role, PASSWORD, role, store.now())
        made[role] = tokens.create(store, role, "tests", store.now()).token
    done_run = _run_to_the_end(settings, store, "web_demo", "done_run")
    app = create_app(settings, store, secret_key=SECRET, passwords=passwords)
    return WebWorld(settings, store, app, passwords, made, done_run)


def _run_to_the_end(settings: Settings, store: Store, dag_id: str, run_id: str) -> str:
    """Trigger a run and tick a real scheduler and local executor until it has finished."""
    with store.begin() as conn:
        run_creation.trigger(
            conn, dag_id, conf={"rows": 3}, triggered_by="tests", now=store.now(), run_id=run_id
        )
    scheduler = Scheduler(settings, store, LocalExecutor(settings))
    scheduler.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            scheduler.tick()
            with store.read() as conn:
                if run_store.get_run(conn, dag_id, run_id).state in RUN_FINISHED:
                    return run_id
            time.sleep(0.05)
        raise AssertionError(f"run {dag_id}/{run_id} did not finish within 60 s")
    finally:
        scheduler.stop(grace_s=5)


def new_run(world: WebWorld, run_id: str, dag_id: str = "web_demo") -> str:
    """A fresh queued run for a test that changes things."""
    with world.store.begin() as conn:
        run_creation.trigger(
            conn, dag_id, conf={}, triggered_by="tests", now=world.store.now(), run_id=run_id
        )
    return run_id


def publish_and_start(
    conn: Connection,
    spec: DagSpec,
    run_id: str,
    now: datetime,
    *,
    conf: dict[str, Any] | None = None,
    triggered_by: str = "tests",
    source: str | None = None,
) -> int:
    """Record `spec` as bundle "v1" and start a manual run of it by hand (no scheduler): the
    run's primary key. For pages that must show a run in a state a test sets itself."""
    dag_store.record_parse(
        conn,
        bundle_version="v1",
        dags=[ParsedDag(spec, f"# {spec.dag_id}\n" if source is None else source)],
        errors=[],
        now=now,
    )
    pk = run_store.create_run(
        conn,
        dag_id=spec.dag_id,
        run_id=run_id,
        run_type=RunType.MANUAL,
        bundle_version="v1",
        logical_date=now,
        data_interval_start=now,
        data_interval_end=now,
        run_after=now,
        conf=conf or {},
        params={},
        triggered_by=triggered_by,
        now=now,
    )
    run_store.start_run(conn, run_store.get_run_by_id(conn, pk), spec, now)
    return pk


def csrf_of(page: str) -> str:
    """The CSRF token of the first form on `page` (the logout form has one on every page)."""
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page)
    assert found, "the page has no form carrying a CSRF token"
    return found.group(1)
