"""drayman's own files a task must not read: the SQLite database (password hashes, every run's
conf) is created 0600, with its -wal and -shm; the logs folder 0750. With `run_as_user`,
a scheduler or worker refuses to start while the task user could read either."""

from __future__ import annotations

import pwd
from pathlib import Path

from support.accounts import TASK_USER
from support.cli import Drayman


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_a_new_sqlite_database_and_its_wal_files_are_private(tmp_path: Path) -> None:
    d = Drayman(tmp_path)
    d.ok("db", "migrate")
    d.ok("dags", "list")  # another process: the -wal and -shm files exist while it runs, too
    database = d.home / "drayman.db"
    found = {p.name: _mode(p) for p in d.home.glob("drayman.db*")}
    assert found.get(database.name) == 0o600, found
    assert all(mode == 0o600 for mode in found.values()), found


def test_the_scheduler_refuses_a_database_the_task_user_can_read(
    open_root: Path, task_user: pwd.struct_passwd
) -> None:
    d = Drayman(open_root, run_as_user=TASK_USER)
    d.ok("db", "migrate")
    database = d.home / "drayman.db"
    database.chmod(0o644)
    proc = d.cli("scheduler", timeout=120)
    assert proc.returncode != 0, d.last
    assert f"the SQLite database file {database} can be read by run_as_user" in proc.stderr
    assert f"chmod 600 {database}*" in proc.stderr, d.last


def test_the_scheduler_refuses_a_logs_folder_the_task_user_can_enter(
    open_root: Path, task_user: pwd.struct_passwd
) -> None:
    d = Drayman(open_root, run_as_user=TASK_USER)
    d.ok("db", "migrate")
    logs = d.home / "logs"
    logs.mkdir(mode=0o755)
    logs.chmod(0o755)
    proc = d.cli("scheduler", timeout=120)
    assert proc.returncode != 0, d.last
    assert f"the logs folder {logs} can be entered by run_as_user" in proc.stderr, d.last
    assert f"chmod 750 {logs}" in proc.stderr, d.last


def test_the_logs_folder_is_made_private(open_root: Path, task_user: pwd.struct_passwd) -> None:
    d = Drayman(open_root, run_as_user=TASK_USER)
    d.ok("db", "migrate")
    with d.serve("scheduler"):
        d.wait_for(lambda: (d.home / "logs").is_dir() or None, 30, "the logs folder")
    assert _mode(d.home / "logs") == 0o750
