"""Hostile input at the HTTP edge gets a 4xx with the usual error body (an error page off
/api), never a 5xx: NUL characters anywhere in the URL or a form (login included), ids and
offsets beyond their columns, log positions out of range, dates that leave the calendar
once moved to UTC, deep or non-JSON conf, and run ids a manual run may not take. The same
requests run on SQLite, PostgreSQL and MariaDB at the end (PostgreSQL refuses NUL in text).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from webworld import PASSWORD, SECRET, WebWorld, csrf_of

from drayman.auth import tokens, users
from drayman.auth.passwords import Passwords
from drayman.config import Settings
from drayman.store.engine import Store
from drayman.web.app import create_app

BIG = str(2**63)
HUGE = "9" * 30
RUNS = "/api/v1/dags/web_demo/runs"
OVERFLOW_DATES = ["9999-12-31T23:00:00-05:00", "0001-01-01T00:30:00+01:00"]

# (path, status, field): every one refused before a query runs
API_GETS = [
    ("/api/v1/dags/a%00b", 400, None),
    ("/api/v1/dags?search=a%00b", 400, None),
    ("/api/v1/dags?tag=%00", 400, None),
    ("/api/v1/dags/web_demo/runs/x%00/tasks", 400, None),
    (f"/api/v1/dags?offset={BIG}", 422, "offset"),
    ("/api/v1/dags?offset=-1", 422, "offset"),
    (f"/api/v1/dags?limit={HUGE}", 422, "limit"),
    ("/api/v1/tries/2147483648", 422, "try_id"),
    (f"/api/v1/tries/{BIG}", 422, "try_id"),
    (f"/api/v1/tries/{HUGE}/log", 422, "try_id"),
    ("/api/v1/tries/1/log?after_seq=-2", 422, "after_seq"),
    (f"/api/v1/tries/1/log?after_seq={BIG}", 422, "after_seq"),
    (f"/api/v1/dags/web_demo/runs/r/tasks/t/tries?map_index={BIG}", 422, "map_index"),
    ("/api/v1/dags/web_demo/runs/r/tasks/t/tries?map_index=-2", 422, "map_index"),
    *[(f"{RUNS}?since={d.replace('+', '%2B')}", 422, "since") for d in OVERFLOW_DATES],
    (f"{RUNS}?since=-22367", 422, "since"),  # not a Unix time: ISO 8601 only
    *[(f"{RUNS}?until={d.replace('+', '%2B')}", 422, "until") for d in OVERFLOW_DATES],
    (f"/api/v1/dags/{'d' * 251}", 422, "dag_id"),
]


@pytest.mark.parametrize(("path", "status", "field"), API_GETS)
def test_api_refuses_hostile_urls_with_the_error_body(
    as_role: object, path: str, status: int, field: str | None
) -> None:
    answer = as_role("admin").get(path)  # type: ignore[operator]
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["field"] == field and error["message"], error
    if status == 400:
        assert "NUL character" in error["message"]


def _raw(client: TestClient, path: str, text: str) -> object:
    return client.post(path, content=text.encode(), headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("body", "status", "field", "message"),
    [
        ('{"conf": {"a": NaN}}', 422, "conf.a", "no NaN or Infinity"),
        ('{"conf": {"a": 1e999}}', 422, "conf.a", "no NaN or Infinity"),
        ('{"conf": {"a": "\\ud800"}}', 422, "conf.a", "lone surrogate"),
        ('{"conf": {"a\\u0000": 1}}', 422, "conf", "NUL character"),
        ('{"conf": {"a": ' + "[" * 40 + "]" * 40 + "}}", 422, "conf.a[0]", "deeper than 32"),
        ('{"conf": {"a": ' + "[" * 5000 + "]" * 5000 + "}}", 400, None, "parsing the body"),
        ('{"conf": {"a": "' + "x" * 70_000 + '"}}', 422, "conf", "over the limit of 65536"),
        ('{"conf": {"rows": "many"}}', 422, "conf.rows", "expected integer"),
        ('{"run_id": "scheduled__2026-01-01T00:00:00+00:00"}', 422, "run_id", "reserved"),
        ('{"run_id": "backfill__x"}', 422, "run_id", "reserved"),
        ('{"run_id": "a/b"}', 422, "run_id", "'/' at position 1"),
        ('{"run_id": ".."}', 422, "run_id", "'..'"),
        ('{"run_id": "a\\u0001"}', 422, "run_id", "U+0001"),
        ('{"run_id": "a\\u0000"}', 422, "run_id", "U+0000"),
        ('{"run_id": "' + "r" * 251 + '"}', 422, "run_id", "over the limit of 250"),
    ],
)
def test_api_trigger_refuses_hostile_conf_and_run_ids(
    world: WebWorld, as_role: object, body: str, status: int, field: str | None, message: str
) -> None:
    before = _run_count(world)
    answer = _raw(as_role("operator"), RUNS, body)  # type: ignore[operator]
    assert answer.status_code == status, answer.text  # type: ignore[attr-defined]
    error = answer.json()["error"]  # type: ignore[attr-defined]
    assert message in error["message"], error
    if field is None:
        assert error["field"] is None, error
    else:
        assert error["field"].startswith(field), error
    assert _run_count(world) == before


def test_api_types_a_plain_param_by_its_default(as_role: object) -> None:
    client = as_role("operator")  # type: ignore[operator]
    bad = client.post("/api/v1/dags/web_other/runs", json={"conf": {"limit": "many"}})
    assert bad.status_code == 422, bad.text
    assert bad.json()["error"]["field"] == "conf.limit"
    assert "expected integer, got 'many'" in bad.json()["error"]["message"]


def _run_count(world: WebWorld) -> int:
    from drayman.store import runs as run_store

    with world.store.read() as conn:
        return len(run_store.list_runs(conn, dag_id="web_demo", limit=10_000))


# -- the pages --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def operator(world: WebWorld) -> TestClient:
    return world.client("operator", login=True)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/dags/a%00b", 400),
        ("/?q=%00", 400),
        ("/dags/web_demo/graph.json?run_id=a%00b", 400),
        ("/static/a%00b.css", 400),
        ("/tries/2147483648", 422),
        (f"/tries/{BIG}", 422),
        (f"/tries/{HUGE}/log.json", 422),
        ("/tries/1?pos=-2", 422),
        (f"/tries/1?pos={BIG}", 422),
        ("/tries/1/log.json?pos=-2", 422),
        (f"/?offset={BIG}", 422),
        (f"/dags/web_demo?offset={HUGE}", 422),
        ("/dags/web_demo?offset=-1", 422),
        # the page ignores a filter it cannot use, as it ignores one that is not a date
        ("/dags/web_demo?since=9999-12-31T23:00:00-05:00", 200),
        ("/dags/web_demo?until=0001-01-01T00:30:00%2B01:00", 200),
        (f"/dags/web_demo?runs={HUGE}", 200),
        ("/tries/1?pos=-1", 200),
        (f"/tries/1/log.json?pos={2**53}", 200),
    ],
)
def test_pages_refuse_hostile_urls_with_an_error_page(
    operator: TestClient, path: str, status: int
) -> None:
    answer = operator.get(path)
    assert answer.status_code == status, answer.text[:500]
    if status >= 400 and not path.startswith("/static/"):
        assert "text/html" in answer.headers["content-type"]


def test_the_trigger_form_refuses_hostile_conf_and_run_ids(
    world: WebWorld, operator: TestClient
) -> None:
    token = csrf_of(operator.get("/dags/web_demo/trigger").text)
    before = _run_count(world)
    cases = [
        ({"conf_json": "[" * 5000 + "]" * 5000}, 422, "deeper than 32 levels"),
        ({"conf_json": '{"a": ' + "[" * 40 + "]" * 40 + "}"}, 422, "deeper than 32 levels"),
        ({"conf_json": '{"a": NaN}'}, 422, "NaN is not JSON"),
        ({"conf_json": '{"a": "\\ud800"}'}, 422, "lone surrogate"),
        ({"conf_json": '{"a": "\\u0000"}'}, 422, "NUL character"),
        ({"conf_json": '{"a": "' + "x" * 70_000 + '"}'}, 422, "over the limit of 65536"),
        ({"param.rows": "1e999"}, 422, "expected an integer"),
        ({"param.label": "a\x00b"}, 400, "NUL character"),
        ({"conf_json": '{"a": "%00"}', "x\x00": "1"}, 400, "NUL character"),
        ({"run_id": "scheduled__2026-01-01T00:00:00+00:00"}, 422, "reserved"),
        ({"run_id": "../x"}, 422, "&#39;/&#39; at position 2"),
        ({"run_id": "r" * 251}, 422, "over the limit of 250"),
    ]
    for form, status, message in cases:
        answer = operator.post("/dags/web_demo/trigger", data={"csrf_token": token, **form})
        assert answer.status_code == status, (form, answer.text[:300])
        assert message in answer.text, (form, answer.text[-2000:])
    assert _run_count(world) == before


def test_the_trigger_form_takes_a_run_id_and_types_a_plain_param(
    world: WebWorld, operator: TestClient
) -> None:
    page = operator.get("/dags/web_other/trigger").text
    assert 'name="param.limit"' in page and 'type="number"' in page and 'name="run_id"' in page
    token = csrf_of(page)
    bad = operator.post("/dags/web_other/trigger", data={"csrf_token": token, "param.limit": "x"})
    assert bad.status_code == 422 and "expected an integer" in bad.text
    made = operator.post(
        "/dags/web_other/trigger",
        data={"csrf_token": token, "param.limit": "3", "run_id": "from-the-form"},
        follow_redirects=False,
    )
    assert made.status_code == 303, made.text
    assert made.headers["location"] == "/dags/web_other/runs/from-the-form"


@pytest.mark.parametrize(
    "form",
    [
        {"username": "admin\x00", "password": PASSWORD},
        {"username": "admin", "password": PASSWORD + "\x00"},
        {"username": "admin", "password": PASSWORD, "next": "/\x00"},
    ],
)
def test_the_login_form_refuses_nul(world: WebWorld, form: dict[str, str]) -> None:
    answer = world.client().post("/login", data=form, follow_redirects=False)
    assert answer.status_code == 400, answer.text
    assert "NUL character" in answer.text
    multipart = world.client().post(
        "/login", files={k: (None, v) for k, v in form.items()}, follow_redirects=False
    )
    assert multipart.status_code == 400, multipart.text


# -- every database ---------------------------------------------------------------------------


@pytest.fixture
def app_on(store: Store, tmp_path: object) -> Iterator[TestClient]:
    """The app on an empty store of each database, with an admin's token."""
    from pathlib import Path

    home = Path(str(tmp_path)) / "home"
    settings = Settings(home=home, dags_folder=home / "dags", database_url=store.url)
    passwords = Passwords(memory_kib=256, time_cost=1, parallelism=1)
    users.create(store, passwords, "admin", PASSWORD, "admin", store.now())
    token = tokens.create(store, "admin", "tests", store.now()).token
    client = TestClient(create_app(settings, store, secret_key=SECRET, passwords=passwords))
    client.headers["Authorization"] = f"Bearer {token}"
    yield client


def test_no_hostile_url_is_a_5xx_on_any_database(app_on: TestClient) -> None:
    paths = [path for path, _status, _field in API_GETS] + [
        "/api/v1/dags?search=%F0%9F%9A%82%ED%A0%80",  # an emoji, and a surrogate's UTF-8
        f"/api/v1/dags/{'🚂' * 250}",
        "/api/v1/tries/2147483647",
        "/api/v1/tries/2147483647/log?after_seq=2147483647",
        f"/api/v1/dags/x/runs?since=0001-01-01T00:00:00&until=9999-12-31T23:59:59.999999&offset={10**9}",
        "/api/v1/dags/x/runs/r/tasks/t/tries?map_index=1000000",
        "/tries/2147483647?pos=9007199254740992",
        "/dags/x?since=0001-01-01&until=9999-12-31",
        f"/dags/{'x' * 5000}",
        f"/dags/x/runs/{'🚂' * 300}",
        f"/?q={'🚂' * 300}&tag={'x' * 5000}",
    ]
    for path in paths:
        answer = app_on.get(path)
        assert answer.status_code < 500, (path, answer.text[:300])
    refused = app_on.post(RUNS, json={"conf": {"a": "\x00"}})
    assert refused.status_code == 422, refused.text


@pytest.mark.parametrize("charset", ["utf-7", "UTF-7", "utf_16"])
def test_a_nul_smuggled_by_a_form_charset_is_refused_on_any_database(
    app_on: TestClient, charset: str
) -> None:
    """The multipart parser decodes the parts in the charset the client names: `admin+AAA-`
    is `admin\\x00` in UTF-7, with no NUL byte for a check of the raw body to see."""
    value = "admin\x00".encode(charset)
    body = (
        b'--XyZb0undary\r\nContent-Disposition: form-data; name="username"\r\n\r\n'
        + value
        + b'\r\n--XyZb0undary\r\nContent-Disposition: form-data; name="password"\r\n\r\n'
        + "x".encode(charset)
        + b"\r\n--XyZb0undary--\r\n"
    )
    content_type = f"multipart/form-data; boundary=XyZb0undary; charset={charset}"
    answer = app_on.post("/login", content=body, headers={"content-type": content_type})

    assert answer.status_code == 400, answer.text[:300]
    assert "NUL character" in answer.text
