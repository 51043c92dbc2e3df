"""Workload UI: how fast the web UI answers over a big history (issue 4's performance goal).

    python -m bench run UI --db postgresql [--requests 20] [--rebuild] [--scale 1.0] [--json]

Builds or reuses the database of `bench/ui_data.py` (~1,000,000 tries of 500 DAGs), starts
`drayman web` on a free loopback port with `DRAYMAN_DATABASE_URL` pointing at it, creates (or
resets) an admin user with `drayman users create --password-stdin`, logs in with POST /login
(the session cookie; an API token from `drayman tokens create` if that login gives no cookie),
then requests each page of `PAGES` `requests` times after one warm-up request.

Per page it reports the median time at the server (the `Server-Timing` header's `total`
metric, or its largest `dur` when there is no `total`; the time measured here when the
header is missing: `timing` says which), the median time in SQL (its `db` metric, None
without one) and the body's size in bytes, plus `max_median_s`.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import importlib.util
import json
import os
import re
import secrets
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import ui_data
from bench.errors import BenchError
from bench.results import machine
from bench.services import Server, drayman_bin, start

# The pages measured, by name: change the routes here when the web's URLs settle. Fields in
# braces are `ui_data.Targets` attributes, URL-quoted.
PAGES: dict[str, str] = {
    "dags": "/",
    "grid": "/dags/{big_dag_id}?runs=50",  # the issue: its latest 50 runs of 100 tasks
    "gantt": "/dags/{gantt_dag_id}/runs/{gantt_run_id}",
    "log": "/tries/{big_log_try_id}",
}
USERNAME = "bench-ui"
READY_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 60.0


def page_paths(targets: ui_data.Targets) -> dict[str, str]:
    """Each page's path for this database's targets."""
    values = {k: urllib.parse.quote(str(v), safe="") for k, v in targets.__dict__.items()}
    return {name: template.format(**values) for name, template in PAGES.items()}


def run_ui(*, db: str, requests: int, rebuild: bool, scale: float) -> dict[str, Any]:
    """Measure every page of `PAGES`; one JSON-ready report."""
    if db != "postgresql":
        raise BenchError(
            f"workload UI runs on --db postgresql only (not {db}): see bench/README.md"
        )
    if importlib.util.find_spec("drayman.cli.web") is None:
        raise BenchError(
            "workload UI needs the `drayman web` command (src/drayman/cli/web.py), "
            "which this drayman does not have yet"
        )
    try:
        built = ui_data.ensure(scale=scale, rebuild=rebuild)
    except ui_data.BuildError as exc:
        raise BenchError(str(exc)) from exc
    with tempfile.TemporaryDirectory(prefix="drayman-bench-ui-") as tmp:
        env = {"DRAYMAN_HOME": str(Path(tmp) / "home"), "DRAYMAN_DATABASE_URL": built.url}
        password = secrets.token_urlsafe(18)
        _ensure_user(env, password)
        with _web(env, Path(tmp) / "web.log") as base:
            client = _login(base, env, password)
            pages = {
                name: _measure(client, base + path, requests)
                for name, path in page_paths(built.targets).items()
            }
            auth = client.auth
    return {
        "workload": "UI",
        "db": db,
        "database": built.url.rsplit("/", 1)[1],
        "reused": built.reused,
        "tries": built.summary["tries"],
        "requests": requests,
        "auth": auth,
        "pages": pages,
        "max_median_s": max(p["median_s"] for p in pages.values()),
        "max_bytes": max(p["bytes"] for p in pages.values()),
        "machine": machine(),
    }


# ---------------------------------------------------------------- the server and the user


def _cli(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(drayman_bin()), *args],
        env={**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _ensure_user(env: dict[str, str], password: str) -> None:
    """An admin `USERNAME` with `password`: created, or its password reset on a reused DB."""
    done = _cli(env, "users", "create", USERNAME, "--role", "admin", "--password-stdin",
                stdin=password + "\n")  # fmt: skip
    if done.returncode == 4:  # conflict: the user is there from an earlier run
        done = _cli(env, "users", "set-password", USERNAME, "--password-stdin",
                    stdin=password + "\n")  # fmt: skip
    if done.returncode != 0:
        raise BenchError(f"cannot create the user {USERNAME}: {done.stderr.strip()}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _web(env: dict[str, str], log_path: Path) -> Iterator[str]:
    """`drayman web` on a free port until the block ends; yields its base URL."""
    port = _free_port()
    server = start(["web", "--host", "127.0.0.1", "--port", str(port)], env, log_path)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(server, base)
        yield base
    finally:
        server.stop()


def _wait_ready(server: Server, base: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        server.check_alive()
        try:
            with urllib.request.urlopen(base + "/health", timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers: not healthy is the page's business, not ours
        except OSError:
            time.sleep(0.2)
    raise BenchError(f"drayman web did not answer on {base} within {READY_TIMEOUT_S:g} s:\n"
                     f"{server.tail()}")  # fmt: skip


# ---------------------------------------------------------------- logging in, requesting


@dataclass
class Client:
    """An opener with the session cookie, or a bearer token when login gave no cookie."""

    opener: urllib.request.OpenerDirector
    headers: dict[str, str]
    auth: str  # "session" or "token"

    def get(self, url: str) -> tuple[int, bytes, dict[str, str], float]:
        """Status, body, headers and the seconds the request took here."""
        request = urllib.request.Request(url, headers=self.headers)
        began = time.perf_counter()
        try:
            with self.opener.open(request, timeout=REQUEST_TIMEOUT_S) as response:
                body = response.read()
                status, headers, final = response.status, dict(response.headers), response.url
        except urllib.error.HTTPError as exc:
            body, status, headers, final = exc.read(), exc.code, dict(exc.headers), url
        elapsed = time.perf_counter() - began
        if urllib.parse.urlsplit(final).path == "/login" and not url.endswith("/login"):
            status = 401  # sent back to the login form: not logged in
        return status, body, headers, elapsed


def _login(base: str, env: dict[str, str], password: str) -> Client:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    form = {"username": USERNAME, "password": password}
    with contextlib.suppress(OSError):
        with opener.open(base + "/login", timeout=REQUEST_TIMEOUT_S) as page:
            form = {**_hidden_inputs(page.read().decode(errors="replace")), **form}
        data = urllib.parse.urlencode(form).encode()
        with opener.open(base + "/login", data=data, timeout=REQUEST_TIMEOUT_S):
            pass
    if len(jar):
        return Client(opener, {}, "session")
    done = _cli(env, "tokens", "create", "--user", USERNAME, "--name", "bench-ui", "--json")
    if done.returncode != 0:
        raise BenchError(f"POST /login set no cookie and no token was made: {done.stderr.strip()}")
    token = json.loads(done.stdout)["token"]
    return Client(opener, {"Authorization": f"Bearer {token}"}, "token")


def _hidden_inputs(html: str) -> dict[str, str]:
    """The login form's hidden fields (a CSRF token), sent back with the credentials."""
    fields = {}
    for tag in re.findall(r"<input[^>]*>", html, flags=re.IGNORECASE):
        if re.search(r'type=["\']?hidden', tag, flags=re.IGNORECASE):
            name = re.search(r'name=["\']([^"\']*)', tag)
            value = re.search(r'value=["\']([^"\']*)', tag)
            if name:
                fields[name.group(1)] = value.group(1) if value else ""
    return fields


def _measure(client: Client, url: str, requests: int) -> dict[str, Any]:
    """One warm-up request, then `requests` timed ones."""
    status, body, _, _ = client.get(url)
    if status != 200:
        raise BenchError(f"GET {url} answered {status}: {body[:300]!r}")
    times, sources, sizes, db_times = [], set(), [], []
    for _ in range(max(requests, 1)):
        status, body, headers, elapsed = client.get(url)
        if status != 200:
            raise BenchError(f"GET {url} answered {status}: {body[:300]!r}")
        server = server_time_s(headers)
        times.append(elapsed if server is None else server)
        sources.add("client" if server is None else "server")
        sizes.append(len(body))
        if "db" in (metrics := server_timings(headers)):
            db_times.append(metrics["db"])
    return {
        "path": urllib.parse.urlsplit(url).path,
        "median_s": round(statistics.median(times), 4),
        "min_s": round(min(times), 4),
        "max_s": round(max(times), 4),
        "db_median_s": round(statistics.median(db_times), 4) if db_times else None,
        "bytes": max(sizes),
        "timing": "/".join(sorted(sources)),
    }


def server_timings(headers: dict[str, str]) -> dict[str, float]:
    """Each metric of a `Server-Timing` header in seconds (`total;dur=12.5, db;dur=3` is
    {"total": 0.0125, "db": 0.003}); empty when there is no header or no `dur`."""
    value = next((v for k, v in headers.items() if k.lower() == "server-timing"), None)
    durations: dict[str, float] = {}
    for metric in (value or "").split(","):
        name, _, params = metric.strip().partition(";")
        found = re.search(r"dur=([0-9.]+)", params)
        if found:
            durations[name.strip()] = float(found.group(1)) / 1000
    return durations


def server_time_s(headers: dict[str, str]) -> float | None:
    """Seconds from a `Server-Timing` header (`total;dur=12.5, db;dur=3` is 0.0125), or None."""
    durations = server_timings(headers)
    if not durations:
        return None
    return durations.get("total", max(durations.values()))
