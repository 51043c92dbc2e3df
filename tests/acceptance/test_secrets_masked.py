"""Passwords in URLs never reach the terminal: `drayman config`, the standalone banner, the
errors of a bad or unreachable database or broker, and drayman's own log lines."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable

import pytest

from support.cli import DRAYMAN, Drayman, empty_postgres
from support.waiting import wait_until

PASSWORD = "Hunter2-not-to-be-seen"


def _free_port() -> int:
    """A loopback port nothing listens on (bound and released: a refused connection)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _with_password(url: str) -> str:
    """`url` (a trust-authenticated PostgreSQL URL) with a password the server ignores."""
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{PASSWORD}@{host}"


def _assert_hidden(text: str) -> None:
    assert PASSWORD not in text, text
    assert PASSWORD[:8] not in text, text


def test_config_masks_database_and_broker_passwords(make_drayman: Callable[..., Drayman]) -> None:
    d = make_drayman(
        "config-mask",
        database_url=f"postgresql+psycopg://etl:{PASSWORD}@db.internal:5432/drayman",
        broker_url=f"amqp://drayman:{PASSWORD}@rabbit.internal:5672//",
    )
    table = d.ok("config")
    rows = {row["key"]: row["value"] for row in d.json("config")}

    _assert_hidden(table)
    assert rows["database_url"] == "postgresql+psycopg://etl:***@db.internal:5432/drayman"
    assert rows["broker_url"] == "amqp://drayman:***@rabbit.internal:5672//"
    assert "etl:***@db.internal" in table


def test_unreachable_postgresql_error_masks_the_password(
    make_drayman: Callable[..., Drayman],
) -> None:
    url = f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:{_free_port()}/nowhere"
    d = make_drayman("unreachable-db", database_url=url)
    for command in (["dags", "list"], ["db", "migrate"]):
        proc = d.cli(*command)
        assert proc.returncode != 0, d.last
        assert "error:" in proc.stderr, d.last
        _assert_hidden(proc.stdout + proc.stderr)


def test_unsupported_database_error_masks_the_password(
    make_drayman: Callable[..., Drayman],
) -> None:
    d = make_drayman("unsupported-db", database_url=f"oracle://scott:{PASSWORD}@db:1521/orcl")
    proc = d.cli("dags", "list")

    assert proc.returncode == 2, d.last
    assert "unsupported database" in proc.stderr, d.last
    assert "oracle://scott:***@db:1521/orcl" in proc.stderr, d.last
    _assert_hidden(proc.stdout + proc.stderr)


def test_standalone_banner_masks_the_password(
    make_drayman: Callable[..., Drayman], postgres_url: str
) -> None:
    url = _with_password(empty_postgres(postgres_url))
    d = make_drayman("banner-mask", database_url=url, web_port=str(_free_port()))
    try:
        with d.serve("standalone", "--no-examples") as server:
            server.wait_output("database:")
            output = server.output()
    finally:
        empty_postgres(postgres_url)

    _assert_hidden(output)
    assert "postgres:***@127.0.0.1" in output, output


@pytest.mark.slow
def test_celery_worker_masks_an_unreachable_broker_password(
    make_drayman: Callable[..., Drayman],
) -> None:
    """The worker's and the scheduler's lines about a broker they cannot reach, kombu's and
    Celery's included, show the broker URL without its password."""
    broker = f"amqp://guest:{PASSWORD}@127.0.0.1:{_free_port()}//"
    d = make_drayman("broker-mask", executor="celery", broker_url=broker)
    d.ok("db", "migrate")

    scheduler = d.cli("scheduler", "--grace", "1", timeout=60)
    assert scheduler.returncode != 0, d.last
    assert "cannot reach the broker amqp://guest:***@127.0.0.1" in scheduler.stderr, d.last
    _assert_hidden(scheduler.stdout + scheduler.stderr)

    output_path = d.root / "worker.out"
    with output_path.open("wb") as out:
        worker = subprocess.Popen(
            [str(DRAYMAN), "worker", "--grace", "1"],
            env=d.env,
            cwd=d.root,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(
            lambda: "Cannot connect to" in output_path.read_text(errors="replace"),
            60,
            "the worker's line about the broker it cannot reach",
            last=lambda: output_path.read_text(errors="replace"),
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
    output = output_path.read_text(errors="replace")
    _assert_hidden(output)
    assert "guest:**@127.0.0.1" in output or "guest:***@127.0.0.1" in output, output


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_log_lines_mask_urls(make_drayman: Callable[..., Drayman], log_format: str) -> None:
    """drayman's own log handler masks every line, whatever logger wrote it."""
    code = (
        "import logging\n"
        "from drayman.cli import logs\n"
        f"logs.setup({log_format!r})\n"
        "url = 'redis://:" + PASSWORD + "@127.0.0.1:6379/0'\n"
        "logging.getLogger('drayman.test').warning('broker.unreachable url=%s', url)\n"
        "try:\n"
        "    raise ValueError('cannot connect to ' + url)\n"
        "except ValueError:\n"
        "    logging.getLogger('drayman.test').exception('broker.failed')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    _assert_hidden(proc.stdout + proc.stderr)
    assert "redis://:***@127.0.0.1:6379/0" in proc.stdout, proc.stdout
    assert "broker.failed" in proc.stdout, proc.stdout


def test_config_masks_passwords_in_the_query_string(make_drayman: Callable[..., Drayman]) -> None:
    """libpq, PyMySQL and redis-py also take the password from the query string."""
    d = make_drayman(
        "config-mask-query",
        database_url=f"mysql+pymysql://etl@db.internal/drayman?passwd={PASSWORD}&charset=utf8mb4",
        broker_url=f"redis://redis.internal:6379/0?password={PASSWORD}",
    )
    table = d.ok("config")
    rows = {row["key"]: row["value"] for row in d.json("config")}

    _assert_hidden(table)
    assert (
        rows["database_url"] == "mysql+pymysql://etl@db.internal/drayman?passwd=***&charset=utf8mb4"
    )
    assert rows["broker_url"] == "redis://redis.internal:6379/0?password=***"


def test_empty_database_error_masks_a_query_string_password(
    make_drayman: Callable[..., Drayman], postgres_url: str
) -> None:
    url = empty_postgres(postgres_url)
    url += ("&" if "?" in url else "?") + f"password={PASSWORD}"
    d = make_drayman("empty-db-query", database_url=url)
    try:
        proc = d.cli("dags", "list")
    finally:
        empty_postgres(postgres_url)

    assert proc.returncode != 0, d.last
    assert "is empty" in proc.stderr, d.last
    assert "password=***" in proc.stderr, d.last
    _assert_hidden(proc.stdout + proc.stderr)
