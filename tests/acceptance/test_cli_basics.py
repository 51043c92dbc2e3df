"""The CLI's everyday surface: version and help, config, migrations, triggering with conf and
its errors, DST-correct next runs, pause and unpause, one scheduler per SQLite database,
backfill, and the text form of `runs show`.

Exit codes (see drayman.cli.main): 0 ok, 1 failed, 2 bad input, 3 not found, 4 conflict.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import drayman as drayman_package

if TYPE_CHECKING:
    from support.cli import Drayman, Server

GROUPS = ["config", "dags", "db", "pools", "runs", "scheduler", "standalone", "tasks"]

TEMPLATED = """
    from drayman import DAG, Param, Shell

    with DAG(
        "templated",
        schedule=None,
        params={"greeting": "hello", "count": Param(1, type="integer")},
    ):
        Shell(
            "write",
            'echo "{{ params.greeting }} {{ conf.word }} x{{ params.count }} ({{ dag_id }})"'
            ' > "$OUT"',
            env={"OUT": "{{ conf.out }}"},
        )
"""

TICKER = """
    from datetime import timedelta

    from drayman import DAG, Shell

    with DAG("ticker", schedule=timedelta(seconds=1), start_date="2026-01-01", catchup=False):
        Shell("tick", "echo tick {{ ts }}")
"""

DAILY = """
    from drayman import DAG, task

    with DAG("daily", schedule="@daily", timezone="UTC", start_date="2026-01-01"):

        @task
        def load(ctx) -> str:
            print(f"loading {ctx.ds}: {ctx.data_interval_start} .. {ctx.data_interval_end}")
            return ctx.ds

        load()

    # for backfills into the future, which `daily`'s own backfill test must not see
    with DAG("daily_ahead", schedule="@daily", timezone="UTC", start_date="2026-01-01"):

        @task
        def noop() -> None:
            pass

        noop()
"""

FLAKY = """
    from drayman import DAG, task

    with DAG("flaky", schedule=None):

        @task(retries=1, retry_delay=0)
        def wobbly(ctx) -> None:
            if ctx.try_number == 1:
                raise RuntimeError("first try fails")
            print("second try works")

        @task
        def steady() -> None:
            print("steady")

        wobbly() >> steady()
"""

DST = """
    from drayman import DAG, Shell

    for dag_id, cron, tz in [
        ("los_angeles", "0 2 * * *", "America/Los_Angeles"),
        ("berlin", "30 2 * * *", "Europe/Berlin"),
        ("sydney", "30 2 * * *", "Australia/Sydney"),
    ]:
        with DAG(dag_id, schedule=cron, timezone=tz, start_date="2026-01-01"):
            Shell("noop", "true")
"""


@pytest.fixture(scope="module")
def scheduler(make_drayman: Callable[..., Drayman]) -> Iterator[tuple[Drayman, Server]]:
    d = make_drayman("basics")
    for name, source in [
        ("templated.py", TEMPLATED),
        ("ticker.py", TICKER),
        ("daily.py", DAILY),
        ("flaky.py", FLAKY),
        ("dst.py", DST),
    ]:
        d.write_dag(name, source)
    d.ok("db", "migrate")
    assert "published bundle" in d.ok("dags", "parse")
    d.ok("dags", "pause", "ticker")  # unpaused by test_pause_and_unpause only
    with d.serve("scheduler") as server:
        yield d, server


def _error_line(stderr: str) -> str:
    """The CLI's error: one line on stderr beginning with `error:` (docs/cli.md)."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


# ------------------------------------------------------------------ no database needed


def test_version(drayman: Drayman) -> None:
    for flag in ("--version", "-V"):
        out = drayman.ok(flag)
        assert out.strip() == f"drayman, version {drayman_package.__version__}"


@pytest.mark.slow
def test_help_of_every_command(drayman: Drayman) -> None:
    top = drayman.ok("--help")
    assert "Usage: drayman" in top
    for group in GROUPS:
        assert re.search(rf"^\s+{group}\s+\S", top, re.MULTILINE), f"{group} missing:\n{top}"

    commands = [[group] for group in GROUPS]
    for group in ("dags", "db", "pools", "runs", "tasks"):
        text = drayman.ok(group, "--help")
        listed = text.split("Commands:", 1)[1]
        subcommands = re.findall(r"^  (\S+)  ", listed, re.MULTILINE)
        assert subcommands, f"`drayman {group} --help` lists no commands:\n{text}"
        commands += [[group, sub] for sub in subcommands]
    assert ["dags", "next-runs"] in commands and ["runs", "show"] in commands

    def show_help(command: list[str]) -> subprocess.CompletedProcess[str]:
        return drayman.cli(*command, "--help")

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(show_help, commands))
    for command, proc in zip(commands, results, strict=True):
        name = " ".join(command)
        assert proc.returncode == 0, f"drayman {name} --help:\n{proc.stderr}"
        assert proc.stdout.startswith(f"Usage: drayman {name}"), proc.stdout
        assert proc.stderr == "", proc.stderr


def test_config_json_shows_where_each_value_came_from(drayman: Drayman) -> None:
    (drayman.home / "drayman.toml").write_text("worker_idle_s = 42\nparallelism = 3\n")
    rows = {row["key"]: row for row in drayman.json("config")}
    assert rows["home"] == {"key": "home", "value": str(drayman.home), "source": "env DRAYMAN_HOME"}
    assert rows["dags_poll_s"]["value"] == "0.5"
    assert rows["dags_poll_s"]["source"] == "env DRAYMAN_DAGS_POLL_S"
    assert rows["scheduler_poll_s"]["source"] == "env DRAYMAN_SCHEDULER_POLL_S"
    # the environment wins over the file, the file over the defaults
    assert rows["parallelism"] == {
        "key": "parallelism",
        "value": "4",
        "source": "env DRAYMAN_PARALLELISM",
    }
    toml = drayman.home / "drayman.toml"
    assert rows["worker_idle_s"] == {
        "key": "worker_idle_s",
        "value": "42.0",
        "source": f"file {toml}",
    }
    assert rows["executor"] == {"key": "executor", "value": "local", "source": "default"}
    assert rows["database_url"]["value"] == f"sqlite:///{drayman.home / 'drayman.db'}"
    assert rows["database_url"]["source"] == "default"

    drayman.env["DRAYMAN_PARALLELISM"] = "zero"
    bad = drayman.cli("config")
    assert bad.returncode == 2, drayman.last
    assert "DRAYMAN_PARALLELISM" in _error_line(bad.stderr), drayman.last


@pytest.mark.slow
def test_db_migrate_is_idempotent(drayman: Drayman) -> None:
    refused = drayman.cli("dags", "list")
    assert refused.returncode == 2, drayman.last
    assert "drayman db migrate" in _error_line(refused.stderr)

    first = drayman.ok("db", "migrate")
    assert first.startswith("database migrated: empty -> "), first
    revision = first.strip().rsplit(" ", 1)[1]
    again = drayman.ok("db", "migrate")
    assert again.strip() == f"database is up to date (revision {revision})"
    assert drayman.json("dags", "list") == []
    pools = drayman.json("pools", "list")
    assert [p["name"] for p in pools] == ["default_pool"], pools


# ------------------------------------------------------------------ triggering and conf


@pytest.mark.slow
def test_trigger_conf_reaches_the_shell_command(
    scheduler: tuple[Drayman, Server], tmp_path: Path
) -> None:
    d, _server = scheduler
    out = tmp_path / "greeting.txt"
    run_id = d.trigger("templated", {"out": str(out), "word": "there", "count": 3})
    shown = d.wait_run("templated", run_id)
    assert out.read_text() == "hello there x3 (templated)\n"
    assert shown["conf"] == {"out": str(out), "word": "there", "count": 3}

    out_default = tmp_path / "default.txt"
    d.wait_run("templated", d.trigger("templated", {"out": str(out_default), "word": "you"}))
    assert out_default.read_text() == "hello you x1 (templated)\n"


@pytest.mark.slow
def test_trigger_with_bad_json_is_one_clear_line(scheduler: tuple[Drayman, Server]) -> None:
    d, _server = scheduler
    before = len(d.runs("templated"))
    for conf, expected in [("{out: 1}", "not valid JSON"), ("[1, 2]", "must be a JSON object")]:
        proc = d.cli("dags", "trigger", "templated", "--conf", conf)
        assert proc.returncode == 2, d.last
        line = _error_line(proc.stderr)
        assert "--conf" in line and expected in line, line
        assert proc.stdout == ""
    assert len(d.runs("templated")) == before


def test_trigger_unknown_dag_is_not_found(scheduler: tuple[Drayman, Server]) -> None:
    d, _server = scheduler
    proc = d.cli("dags", "trigger", "no_such_dag")
    assert proc.returncode == 3, d.last
    assert "'no_such_dag'" in _error_line(proc.stderr)


def test_conf_failing_a_typed_param_names_it(scheduler: tuple[Drayman, Server]) -> None:
    d, _server = scheduler
    before = len(d.runs("templated"))
    proc = d.cli("dags", "trigger", "templated", "--conf", '{"count": "many"}')
    assert proc.returncode == 2, d.last
    line = _error_line(proc.stderr)
    assert "'count'" in line and "integer" in line and "'many'" in line, line
    assert len(d.runs("templated")) == before


@pytest.mark.slow
def test_hostile_conf_run_ids_and_dates_are_one_clear_line_and_exit_2(
    scheduler: tuple[Drayman, Server],
) -> None:
    """The same checks as the pages' and the API's (drayman.conf, drayman.run_ids)."""
    d, _server = scheduler
    before = len(d.runs("templated"))
    cases = [
        (["--conf", '{"greeting": 5}'], "param 'greeting': expected string, got 5"),
        (["--conf", '{"a": NaN}'], "--conf: not valid JSON: NaN is not JSON"),
        (["--conf", '{"a": ' + "[" * 40 + "]" * 40 + "}"], "deeper than 32 levels"),
        (["--conf", '{"a": "' + "x" * 70_000 + '"}'], "over the limit of 65536"),
        (["--conf", '{"a": "x\\u0000"}'], "--conf.a: the string holds a NUL character"),
        (["--conf", '{"a": ["\\ud800"]}'], "--conf.a[0]: the string holds a lone surrogate"),
        (["--conf", '{"a": ' + "9" * 5000 + "}"], "--conf: not valid JSON"),
        (["--run-id", "scheduled__2026-01-01T00:00:00+00:00"], "'scheduled__' is reserved"),
        (["--run-id", "backfill__x"], "'backfill__' is reserved"),
        (["--run-id", "../etc"], "'/' at position 2 is not allowed"),
        (["--run-id", "a..b"], "hold '..'"),
        (["--run-id", "a\x01b"], "U+0001 at position 1"),
        (["--run-id", "r" * 251], "251 characters, over the limit of 250"),
        (["--logical-date", "9999-12-31T23:00:00-05:00"], "outside the dates UTC can hold"),
    ]
    for args, expected in cases:
        proc = d.cli("dags", "trigger", "templated", *args)
        assert proc.returncode == 2, d.last
        line = _error_line(proc.stderr)
        assert expected in line and len(line) < 400, (args[0], line)
    assert len(d.runs("templated")) == before


# ------------------------------------------------------------------ schedules and DST


def _next_runs(d: Drayman, dag_id: str, after: str, n: int) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = d.json("dags", "next-runs", dag_id, "-n", str(n), "--after", after)
    assert len(runs) == n
    for run in runs:
        assert set(run) >= {
            "run_after",
            "run_after_utc",
            "data_interval_start",
            "data_interval_end",
            "dst_change",
        }, run
    return runs


def test_next_runs_los_angeles_spring_forward(scheduler: tuple[Drayman, Server]) -> None:
    d, _server = scheduler
    runs = _next_runs(d, "los_angeles", "2026-03-06", 5)
    assert [r["run_after"] for r in runs] == [
        "2026-03-06T02:00:00-08:00",
        "2026-03-07T02:00:00-08:00",
        "2026-03-08T03:00:00-07:00",  # 02:00 does not exist that night
        "2026-03-09T02:00:00-07:00",
        "2026-03-10T02:00:00-07:00",
    ]
    assert [r["run_after_utc"] for r in runs] == [
        "2026-03-06T10:00:00+00:00",
        "2026-03-07T10:00:00+00:00",
        "2026-03-08T10:00:00+00:00",
        "2026-03-09T09:00:00+00:00",
        "2026-03-10T09:00:00+00:00",
    ]
    assert [r["dst_change"] is not None for r in runs] == [False, False, True, False, False]
    gap = runs[2]
    assert (gap["data_interval_start"], gap["data_interval_end"]) == (
        "2026-03-07T02:00:00-08:00",
        "2026-03-08T03:00:00-07:00",
    )
    for previous, current in itertools.pairwise(runs):
        assert current["data_interval_start"] == previous["data_interval_end"]
    text = d.ok("dags", "next-runs", "los_angeles", "-n", "5", "--after", "2026-03-06")
    assert "America/Los_Angeles" in text
    (marked,) = [line for line in text.splitlines() if "DST" in line]
    assert marked.startswith("2026-03-08T03:00:00-07:00")


def test_next_runs_berlin_spring_forward(scheduler: tuple[Drayman, Server]) -> None:
    d, _server = scheduler
    runs = _next_runs(d, "berlin", "2026-03-28", 3)
    assert [(r["run_after"], r["run_after_utc"]) for r in runs] == [
        ("2026-03-28T02:30:00+01:00", "2026-03-28T01:30:00+00:00"),
        ("2026-03-29T03:30:00+02:00", "2026-03-29T01:30:00+00:00"),
        ("2026-03-30T02:30:00+02:00", "2026-03-30T00:30:00+00:00"),
    ]
    assert [r["dst_change"] is not None for r in runs] == [False, True, False]


def test_next_runs_sydney_spring_forward(scheduler: tuple[Drayman, Server]) -> None:
    d, _server = scheduler
    runs = _next_runs(d, "sydney", "2026-10-03", 3)
    assert [(r["run_after"], r["run_after_utc"]) for r in runs] == [
        ("2026-10-04T03:30:00+11:00", "2026-10-03T16:30:00+00:00"),
        ("2026-10-05T02:30:00+11:00", "2026-10-04T15:30:00+00:00"),
        ("2026-10-06T02:30:00+11:00", "2026-10-05T15:30:00+00:00"),
    ]
    assert [r["dst_change"] is not None for r in runs] == [True, False, False]


def test_next_runs_sydney_fall_back_runs_once(scheduler: tuple[Drayman, Server]) -> None:
    d, _server = scheduler
    runs = _next_runs(d, "sydney", "2026-04-04", 3)
    # 02:30 happens twice on 2026-04-05 (03:00 AEDT falls back to 02:00 AEST): one run, the first
    assert [(r["run_after"], r["run_after_utc"]) for r in runs] == [
        ("2026-04-05T02:30:00+11:00", "2026-04-04T15:30:00+00:00"),
        ("2026-04-06T02:30:00+10:00", "2026-04-05T16:30:00+00:00"),
        ("2026-04-07T02:30:00+10:00", "2026-04-06T16:30:00+00:00"),
    ]
    assert runs[1]["dst_change"] is not None and runs[2]["dst_change"] is None


# ------------------------------------------------------------------ pause, one scheduler


@pytest.mark.slow
def test_pause_and_unpause(scheduler: tuple[Drayman, Server]) -> None:
    d, _server = scheduler
    assert d.dags_by_id()["ticker"]["is_paused"] is True
    assert d.runs("ticker") == []  # paused before the scheduler started: never ran

    assert d.ok("dags", "unpause", "ticker").strip() == "ticker unpaused"
    d.wait_for(lambda: len(_finished(d.runs("ticker"))) >= 3, 30, "3 finished runs of ticker")

    assert d.ok("dags", "pause", "ticker").strip() == "ticker paused"
    paused_at = datetime.now(UTC)
    assert d.dags_by_id()["ticker"]["is_paused"] is True
    d.wait_for(
        lambda: (runs := d.runs("ticker")) and len(_finished(runs)) == len(runs),
        30,
        "the runs of ticker that had started to finish",
    )
    time.sleep(2.5)  # more than two intervals and several scheduler polls
    # (half a second of slack: a scheduler tick that began before the pause may still finish)
    late = _created_after(d.runs("ticker"), paused_at + timedelta(seconds=0.5))
    assert late == [], "a paused DAG got new scheduled runs"

    unpaused_at = datetime.now(UTC)
    d.ok("dags", "unpause", "ticker")
    d.wait_for(lambda: _created_after(d.runs("ticker"), unpaused_at), 15, "a new run after unpause")
    d.ok("dags", "pause", "ticker")
    assert {r["run_type"] for r in d.runs("ticker")} == {"scheduled"}


def _created_after(runs: list[dict[str, Any]], when: datetime) -> list[dict[str, Any]]:
    return [r for r in runs if datetime.fromisoformat(r["created_at"]) > when]


def _finished(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in runs if r["state"] in ("success", "failed")]


def test_second_scheduler_on_sqlite_is_refused(scheduler: tuple[Drayman, Server]) -> None:
    d, server = scheduler
    proc = d.cli("scheduler", timeout=60)
    assert proc.returncode == 2, d.last
    line = _error_line(proc.stderr)
    assert "already runs on the SQLite database" in line, line
    assert f"pid {server.pid}" in line, line
    server.check_alive()
    # the first one still works
    d.wait_run("flaky", d.trigger("flaky"))


# ------------------------------------------------------------------ backfill and runs show


@pytest.mark.slow
def test_backfill_creates_and_runs_each_interval(scheduler: tuple[Drayman, Server]) -> None:
    d, _server = scheduler
    out = d.ok("dags", "backfill", "daily", "--start", "2026-02-01", "--end", "2026-02-05")
    assert out.startswith("created 5 backfill runs of daily"), out

    def backfills() -> list[dict[str, Any]]:
        return sorted(
            (r for r in d.runs("daily") if r["run_type"] == "backfill"),
            key=lambda r: r["logical_date"],
        )

    runs = backfills()
    assert [r["logical_date"] for r in runs] == [
        f"2026-02-0{day}T00:00:00+00:00" for day in range(1, 6)
    ]
    assert [r["data_interval_end"] for r in runs] == [
        f"2026-02-0{day}T00:00:00+00:00" for day in range(2, 7)
    ]
    for run in runs:
        shown = d.wait_run("daily", run["run_id"])
        log = Path(shown["task_instances"][0]["tries"][-1]["log_path"]).read_text()
        day = run["logical_date"][:10]
        assert f"loading {day}: {day} 00:00:00+00:00" in log, log

    again = d.ok("dags", "backfill", "daily", "--start", "2026-02-01", "--end", "2026-02-05")
    assert again.strip() == (
        "created 0 backfill runs of daily: every interval in the range already has a run (5)"
    ), again
    assert len(backfills()) == 5

    backwards = d.cli("dags", "backfill", "daily", "--start", "2026-02-05", "--end", "2026-02-01")
    assert backwards.returncode == 2, d.last
    assert "--end" in _error_line(backwards.stderr)


def test_backfill_of_the_future_creates_nothing_unless_asked(
    scheduler: tuple[Drayman, Server],
) -> None:
    d, _server = scheduler
    today = datetime.now(UTC).date()
    start, end = (today + timedelta(days=10)).isoformat(), (today + timedelta(days=12)).isoformat()
    out = d.ok("dags", "backfill", "daily_ahead", "--start", start, "--end", end)
    assert out.startswith("created 0 backfill runs of daily_ahead: "), out
    assert "3 have not ended yet" in out and "--include-future" in out, out
    assert not [r for r in d.runs("daily_ahead") if r["run_type"] == "backfill"]

    asked = d.ok(
        "dags", "backfill", "daily_ahead", "--start", start, "--end", end, "--include-future"
    )
    assert asked.startswith("created 3 backfill runs of daily_ahead"), asked
    backfills = [r for r in d.runs("daily_ahead") if r["run_type"] == "backfill"]
    assert sorted(r["logical_date"][:10] for r in backfills) == [
        (today + timedelta(days=n)).isoformat() for n in (10, 11, 12)
    ]


def test_backfill_before_start_date_says_why_nothing_was_made(
    scheduler: tuple[Drayman, Server],
) -> None:
    d, _server = scheduler
    out = d.ok("dags", "backfill", "daily", "--start", "2025-12-01", "--end", "2025-12-05")
    assert out.strip() == (
        "created 0 backfill runs of daily: the range ends before the DAG's start_date "
        "2026-01-01T00:00:00+00:00"
    ), out


def test_runs_show_text_has_a_row_per_try(scheduler: tuple[Drayman, Server]) -> None:
    d, _server = scheduler
    run_id = d.trigger("flaky")
    shown = d.wait_run("flaky", run_id)
    text = d.ok("runs", "show", run_id)
    lines = text.splitlines()
    assert lines[0].startswith(f"flaky {run_id}: success (manual, bundle "), text
    assert lines[1].split() == [
        "task",
        "state",
        "try",
        "try",
        "state",
        "host",
        "pid",
        "start",
        "(UTC)",
        "duration",
        "exit",
        "log",
    ]
    rows = [line.split() for line in lines[3:] if re.match(r"^\S+\s+\S+\s+\d+\s", line)]
    assert [row[:4] for row in rows] == [
        ["steady", "success", "1", "success"],
        ["wobbly", "success", "1", "failed"],
        ["wobbly", "success", "2", "success"],
    ], text
    tries = {
        (ti["task_id"], t["try_number"]): t for ti in shown["task_instances"] for t in ti["tries"]
    }
    for row in rows:
        attempt = tries[row[0], int(row[2])]
        assert row[5] == str(attempt["pid"])
        assert row[-1] == attempt["log_path"]
    assert "wobbly try 1: RuntimeError: first try fails" in text

    unknown = d.cli("runs", "show", "no_such_run")
    assert unknown.returncode == 3, d.last
    assert "no_such_run" in _error_line(unknown.stderr)


def test_runs_show_prints_the_task_state_not_only_the_try_state(
    scheduler: tuple[Drayman, Server],
) -> None:
    """A task marked failed by hand shows failed, though its one try succeeded."""
    d, _server = scheduler
    run_id = d.trigger("flaky")
    d.wait_run("flaky", run_id)
    d.ok("tasks", "mark", "flaky", run_id, "steady", "--state", "failed")
    text = d.ok("runs", "show", run_id, "--dag", "flaky")
    steady = [line.split() for line in text.splitlines() if line.startswith("steady ")]
    assert [row[:4] for row in steady] == [["steady", "failed", "1", "success"]], text
    shown = d.show("flaky", run_id)
    states = {ti["task_id"]: ti["state"] for ti in shown["task_instances"]}
    assert states["steady"] == "failed", shown
