"""`drayman audit list` and the new `drayman users` commands through the real CLI: what the
CLI does is recorded as the OS user from "cli", and read back with filters."""

from __future__ import annotations

import getpass
import json
import os
import pwd
import subprocess
from typing import TYPE_CHECKING

import pytest

from support.cli import DRAYMAN, describe

if TYPE_CHECKING:
    from support.cli import Drayman

PASSWORD = "correct horse battery"
DAG = """
from drayman import DAG, task

with DAG("audited", schedule=None):

    @task
    def only():
        return None
"""


def _create(drayman: Drayman, name: str, role: str) -> None:
    proc = subprocess.run(
        [str(DRAYMAN), "users", "create", name, "--role", role, "--password-stdin"],
        env=drayman.env,
        cwd=drayman.root,
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, describe(proc)


@pytest.mark.slow
def test_cli_changes_are_audited_and_listed_with_filters(drayman: Drayman) -> None:
    drayman.ok("db", "migrate")
    drayman.write_dag("audited.py", DAG)
    drayman.ok("dags", "parse")
    _create(drayman, "carol", "viewer")

    assert drayman.ok("users", "set-role", "carol", "operator").strip() == (
        "user carol: role viewer -> operator"
    )
    assert "user carol disabled; 0 web session(s) ended" in drayman.ok("users", "disable", "carol")
    assert [u["disabled"] for u in drayman.json("users", "list")] == [True]
    assert drayman.ok("users", "enable", "carol").strip() == "user carol enabled"
    token_id = drayman.json("tokens", "create", "--user", "carol", "--name", "ci")["id"]
    run_id = drayman.trigger("audited", {"secret_value": "hunter2hunter2"})
    drayman.ok("dags", "pause", "audited")

    events = drayman.json("audit", "list")
    me = getpass.getuser()
    assert [(e["action"], e["object_type"], e["object_id"]) for e in reversed(events)] == [
        ("user.create", "user", "carol"),
        ("user.set_role", "user", "carol"),
        ("user.disable", "user", "carol"),
        ("user.enable", "user", "carol"),
        ("token.create", "token", str(token_id)),
        ("dag.trigger", "run", f"audited/{run_id}"),
        ("dag.pause", "dag", "audited"),
    ]
    assert {(e["actor"], e["source"]) for e in events} == {(me, "cli")}
    assert "hunter2" not in json.dumps(events), "a conf value reached the audit trail"

    users_only = drayman.json("audit", "list", "--action", "user.", "--limit", "2")
    assert [e["action"] for e in users_only] == ["user.enable", "user.disable"]
    assert drayman.json("audit", "list", "--actor", "somebody-else") == []
    assert drayman.json("audit", "list", "--since", "2999-01-01") == []
    table = drayman.ok("audit", "list", "--action", "dag.pause")
    assert "dag.pause" in table and "dag:audited" in table and me in table

    bad = drayman.cli("users", "set-role", "carol", "root")
    assert bad.returncode == 2 and "root" in bad.stderr, drayman.last
    missing = drayman.cli("users", "disable", "nobody")
    assert missing.returncode == 3 and "no user 'nobody'" in missing.stderr, drayman.last
    not_started = drayman.cli("tasks", "clear", "audited", run_id, "--yes")
    assert not_started.returncode == 4, drayman.last
    assert drayman.json("audit", "list", "--action", "run.clear") == [], "a refused clear"
    late = drayman.cli("audit", "list", "--since", "yesterday")
    assert late.returncode == 2 and "ISO 8601" in late.stderr, drayman.last


def test_the_cli_actor_is_the_uid_s_user_whatever_user_and_logname_say(drayman: Drayman) -> None:
    """$USER and $LOGNAME are the caller's to set: the audit trail must not believe them."""
    drayman.ok("db", "migrate")
    drayman.write_dag("audited.py", DAG)
    drayman.ok("dags", "parse")
    drayman.env.update(USER="forged-admin", LOGNAME="forged-admin")
    drayman.ok("dags", "pause", "audited")

    (event,) = drayman.json("audit", "list", "--action", "dag.pause")
    assert (event["actor"], event["source"]) == (pwd.getpwuid(os.getuid()).pw_name, "cli")
