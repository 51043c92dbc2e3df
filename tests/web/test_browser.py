"""End to end in a real Chromium (Debian's, driven by Playwright) against `drayman standalone`.

A user made with `drayman users create` logs in, triggers a DAG with a conf from the generated
form, watches the run succeed in the grid without reloading, opens the Gantt chart, reads a
task's log, and clears a failed task so that it runs again and succeeds. Screenshots of the
main pages go to docs/img/ when DRAYMAN_SCREENSHOTS=1 (the README shows them).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, Page, expect, sync_playwright

from support.services import missing
from support.waiting import wait_until

pytestmark = pytest.mark.slow  # a real Chromium against a real standalone
CHROMIUM = Path("/usr/bin/chromium")
DRAYMAN = Path(sys.executable).parent / "drayman"
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
PASSWORD = "browser test password"

DEMO = """
import time

from drayman import DAG, Param, task

with DAG(
    "browser_demo",
    schedule="0 6 * * *",
    timezone="Europe/Paris",
    start_date="2026-01-01",
    params={"greeting": Param("hello", type="string"), "count": Param(1, type="integer")},
    tags=["e2e"],
    description="Says hello as many times as the conf asks",
):

    @task
    def greet(ctx):
        time.sleep(1.5)  # long enough for the grid to show it running first
        for i in range(ctx.params["count"]):
            print(f"{ctx.params['greeting']} #{i + 1}")
        return ctx.params["count"]

    @task
    def report(n):
        print(f"greeted {n} times")

    report(greet())
"""

FLAKY = """
import os
from pathlib import Path

from drayman import DAG, task

with DAG("browser_flaky", schedule=None, tags=["e2e"]):

    @task
    def prepare():
        print("prepared")

    @task
    def check():
        marker = Path(os.environ["DRAYMAN_HOME"]) / "allow_check"
        if not marker.exists():
            raise RuntimeError(f"no marker at {marker} yet")
        print("check passed: the marker is there")

    prepare() >> check()
"""

STUCK = """
import time

from drayman import DAG, task

with DAG("browser_stuck", schedule=None, tags=["e2e"]):

    @task(retries=2)
    def wait_forever():
        print("waiting for an API that never answers", flush=True)
        time.sleep(600)

    wait_forever()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Standalone:
    root: Path
    env: dict[str, str]
    url: str
    proc: subprocess.Popen[bytes]
    output: Path

    def cli(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [str(DRAYMAN), *args],
            env=self.env,
            cwd=self.root,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"drayman {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout

    def log(self) -> str:
        return self.output.read_text(errors="replace")


def _wait_http(server: Standalone, timeout: float) -> None:
    def serving() -> bool:
        if server.proc.poll() is not None:
            pytest.fail(f"drayman standalone exited with {server.proc.returncode}:\n{server.log()}")
        try:
            with urllib.request.urlopen(server.url + "health", timeout=2) as answer:
                return answer.status in (200, 503)
        except OSError:
            return False

    wait_until(serving, timeout, f"drayman standalone's web at {server.url}", last=server.log)


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    root = tmp_path_factory.mktemp("browser")
    (root / "dags").mkdir()
    (root / "dags" / "demo.py").write_text(textwrap.dedent(DEMO))
    (root / "dags" / "flaky.py").write_text(textwrap.dedent(FLAKY))
    (root / "dags" / "stuck.py").write_text(textwrap.dedent(STUCK))
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRAYMAN_")}
    env.update(
        DRAYMAN_HOME=str(root / "home"),
        DRAYMAN_DAGS_FOLDER=str(root / "dags"),
        DRAYMAN_WEB_PORT=str(port),
        DRAYMAN_DAGS_POLL_S="0.5",
        DRAYMAN_SCHEDULER_POLL_S="0.5",
        DRAYMAN_PARALLELISM="4",
    )
    output = root / "standalone.out"
    with output.open("wb") as out:
        proc = subprocess.Popen(
            [str(DRAYMAN), "standalone", "--grace", "5"],
            env=env,
            cwd=root,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Standalone(root, env, f"http://127.0.0.1:{port}/", proc, output)
    try:
        _wait_http(server, 60)
        server.cli(
            "users", "create", "ada", "--role", "operator", "--password-stdin", stdin=PASSWORD
        )
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        missing(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu"],
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, standalone: Standalone) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, base_url=standalone.url)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    opened.on(
        "console",
        lambda msg: errors.append(msg.text) if msg.type == "error" else None,
    )
    yield opened
    context.close()
    assert not errors, f"the page logged errors (CSP violations show here): {errors}"


def _shoot(page: Page, name: str) -> None:
    if os.environ.get("DRAYMAN_SCREENSHOTS") != "1":
        return
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS_IMG / f"{name}.png"), full_page=False)


def _login(page: Page) -> None:
    page.goto("/")  # not logged in: sent to the login form
    page.fill("input[name=username]", "ada")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("a.dag-link", has_text="browser_demo")).to_be_visible(timeout=30_000)


def test_trigger_watch_gantt_log_and_clear_in_a_browser(page: Page, standalone: Standalone) -> None:
    _login(page)
    _shoot(page, "dags")

    # trigger with conf from the generated form
    page.click("a.dag-link:text-is('browser_demo')")
    page.click("text=Trigger…")
    page.fill("input[name='param.greeting']", "bonjour")
    page.fill("input[name='param.count']", "3")
    page.click("button:text('Trigger run')")
    expect(page.locator("h1")).to_contain_text("manual__")
    run_url = page.url
    run_id = page.locator("h1").inner_text().strip()

    # watch it succeed in the grid, without reloading the page
    page.goto("/dags/browser_demo")
    page.evaluate("window.__not_reloaded = true")
    column = page.locator(f'#grid a.run-bar[title="{run_id}: success"]')
    expect(column).to_have_count(1, timeout=60_000)
    assert page.evaluate("window.__not_reloaded === true"), "the page reloaded to update"
    page.reload()  # for the screenshot: the graph and the chart are drawn at page load
    _shoot(page, "dag")

    # the Gantt chart of the run
    page.goto(run_url)
    expect(page.locator("svg.gantt a.bar")).to_have_count(2, timeout=30_000)
    expect(page.locator("pre.conf").first).to_contain_text('"greeting": "bonjour"')
    _shoot(page, "run")

    # a task's log
    page.click("svg.gantt a.bar >> nth=0")
    expect(page.locator("#log")).to_contain_text("bonjour #3", timeout=30_000)
    _shoot(page, "try")

    # a failing run, then clear its failed task so it reruns and succeeds
    flaky_id = standalone.cli("dags", "trigger", "browser_flaky").split()[-1]
    page.goto(f"/dags/browser_flaky/runs/{flaky_id}")
    expect(page.locator("#run-live .meta .state")).to_have_text("failed", timeout=60_000)
    (Path(standalone.env["DRAYMAN_HOME"]) / "allow_check").write_text("go")
    page.select_option("form.task-action select[name=task_id]", "check")
    page.check("form.task-action input[name=only_failed]")
    page.click("form.task-action button:text('Clear task…')")
    expect(page.locator("ul.keys li")).to_have_text(["check"])
    page.click("button:text('Yes, do it')")
    expect(page.locator("#run-live .meta .state")).to_have_text("success", timeout=60_000)
    expect(page.locator("svg.gantt a.bar")).to_have_count(3)  # prepare, check try 1, try 2

    page.goto("/workers")
    expect(page.locator("h1")).to_have_text("Workers")
    _shoot(page, "workers")


def test_cancel_a_running_try_in_a_browser(page: Page, standalone: Standalone) -> None:
    _login(page)
    run_id = standalone.cli("dags", "trigger", "browser_stuck").split()[-1]
    page.goto(f"/dags/browser_stuck/runs/{run_id}")
    bar = page.locator("svg.gantt a.bar")
    expect(bar).to_have_count(1, timeout=60_000)
    bar.first.click()
    expect(page.locator("#log")).to_contain_text("never answers", timeout=30_000)

    page.click("#cancel-try button")
    expect(page.locator("ul.keys li")).to_have_text(["wait_forever"])
    page.click("button:text('Yes, do it')")
    expect(page.locator("#try-state")).to_contain_text("failed")
    expect(page.locator("table.facts")).to_contain_text("cancelled by ada (web)")
    expect(page.locator("#cancel-try")).to_have_count(0)

    page.goto(f"/dags/browser_stuck/runs/{run_id}")
    expect(page.locator("#run-live .meta .state")).to_have_text("failed", timeout=30_000)
    expect(page.locator("svg.gantt a.bar")).to_have_count(1)  # no retry after a cancel
