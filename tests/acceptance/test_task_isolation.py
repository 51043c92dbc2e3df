"""A task cannot find drayman's own secrets: not in its environment, not in
`/proc/<pid>/environ` of its worker, the forkserver or the scheduler / `drayman worker`, not
in the secret key file — with the local executor and with a Celery worker, run as a dedicated
user. Without `run_as_user` (drayman and tasks both root here), the task's own environment and
every process between it and drayman's main process are still clean; only the main process's
`/proc/<pid>/environ` keeps them, which is why the setting exists.

The task itself looks, and prints what it found as one JSON line in its log.
"""

from __future__ import annotations

import json
import os
import pwd
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from drayman.auth.secret import load_secret_key
from support.accounts import TASK_USER
from support.cli import DRAYMAN, Drayman, Server, empty_postgres
from support.services import unreachable
from support.waiting import wait_until

REDIS_DB = 9  # this file's own Redis database: flushed before and after
PASSWORD = "pg-Pass-never-shown-7c1e"
SECRET_KEY = "secret-key-never-shown-" + "k" * 40

PROBE_DAG = """
import json, os, stat, sys
from drayman import DAG, Shell, task

# Each secret in two halves, searched for joined: this file (and so the task's memory)
# holds them apart, so only a copy of the secret itself matches.
NEEDLES = json.loads(@NEEDLES@)  # env var -> its value's halves
HALVES = json.loads(@HALVES@)  # what must not be in memory -> its halves
KEY_FILE = @KEY_FILE@
REPORTS = @REPORTS@  # where the file's top level says what it could see, once per import


def joined(text, head, tail):
    at = text.find(head)
    while at >= 0:
        if text.startswith(tail, at + len(head)):
            return True
        at = text.find(head, at + 1)
    return False


def look(text):
    return sorted(n for n, (h, t) in NEEDLES.items() if joined(text, h, t) or n + "=" in text)


# DAG files run in the parser and the warm worker: neither may see the secrets either
if look("\\n".join(f"{k}={v}" for k, v in os.environ.items())):
    raise RuntimeError("this DAG file was imported with drayman's secrets in os.environ")


def ancestors():
    pid, chain = os.getppid(), []
    while pid > 1:
        chain.append(pid)
        with open(f"/proc/{pid}/stat") as f:
            pid = int(f.read().rsplit(")", 1)[1].split()[1])
    return chain


def in_memory():
    found = set()
    with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            if not fields[1].startswith("r") or fields[-1] in ("[vvar]", "[vsyscall]"):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            try:
                mem.seek(start)
                chunk = mem.read(end - start)
            except (OSError, ValueError, OverflowError):
                continue
            for name, (head, tail) in HALVES.items():
                if joined(chunk, head.encode(), tail.encode()):
                    found.add(f"{name} in {fields[-1]}")
    return sorted(found)


def read_environ(pid):
    # An ancestor's environ may hold the secrets (drayman's main process, readable to a root
    # task): read it into one buffer, search it there, and zero it, so that no copy is left
    # in this process's heap, nor in a try forked from it, for in_memory() to find.
    buf = bytearray(1 << 20)
    try:
        with open(f"/proc/{pid}/environ", "rb", buffering=0) as f:
            size = f.readinto(buf)
    except OSError as exc:
        return {"readable": False, "error": type(exc).__name__}
    try:
        found = sorted(
            n
            for n, (h, t) in NEEDLES.items()
            if joined(buf, h.encode(), t.encode()) or buf.find((n + "=").encode(), 0, size) >= 0
        )
    finally:
        buf[:] = bytes(len(buf))
    return {"readable": True, "found": found}


def sockets():
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if stat.S_ISSOCK(os.fstat(int(name)).st_mode):
                found.append(int(name))
        except OSError:
            pass
    return found


def key_file():
    try:
        with open(KEY_FILE) as f:
            return "read"
    except OSError as exc:
        return type(exc).__name__


def top_level_report():
    main = getattr(sys.modules.get("__main__"), "__spec__", None)
    if getattr(main, "name", "") == "drayman.dag_processor.parse_child":
        phase = "parse"
    elif "drayman.runner.worker" in sys.modules:
        phase = "try"
    else:
        return
    report = {
        "phase": phase,
        "uid": os.getuid(),
        "euid": os.geteuid(),
        "ancestors": {str(p): read_environ(p) for p in ancestors()},
        "sockets": sockets(),
        "key_file": key_file(),
    }
    with open(os.path.join(REPORTS, f"{phase}-{os.getpid()}.json"), "w") as f:
        json.dump(report, f)


top_level_report()

with DAG("probe", schedule=None):

    @task
    def look_for_secrets(ctx):
        # first: what the task reads below (a readable /proc environ) lands in its memory
        memory = in_memory()
        own = "\\n".join(f"{k}={v}" for k, v in os.environ.items())
        report = {
            "uid": os.getuid(),
            "euid": os.geteuid(),
            "environ": look(own),
            "self": read_environ("self"),
            "ancestors": {str(p): read_environ(p) for p in ancestors()},
            "home_traversable": os.access(os.path.dirname(KEY_FILE), os.X_OK),
            "memory": memory,
        }
        report["key_file"] = key_file()
        print("ISOLATION " + json.dumps(report), flush=True)

    look_for_secrets()
    Shell(
        "shell_env",
        "echo SHELLENV uid=$(id -u) secrets="
        "$(env | grep -c -E '^DRAYMAN_(DATABASE_URL|SECRET_KEY|BROKER_URL)=')",
    )
"""


@pytest.fixture
def secret_database(postgres_url: str) -> Iterator[str]:
    """The session's PostgreSQL database, emptied, as a URL with a password (trust auth
    ignores it): the secret a task must not find."""
    empty_postgres(postgres_url)
    scheme, rest = postgres_url.split("://", 1)
    user, host = rest.split("@", 1)
    try:
        yield f"{scheme}://{user}:{PASSWORD}@{host}"
    finally:
        empty_postgres(postgres_url)


@pytest.fixture
def redis_broker() -> Iterator[str]:
    url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        unreachable(f"Redis at {url}", exc)
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _installation(root: Path, database_url: str, **settings: str) -> Drayman:
    d = Drayman(root, database_url=database_url, secret_key=SECRET_KEY, **settings)
    d.home.chmod(0o755)
    d.dags.chmod(0o755)
    needles = {
        "DRAYMAN_DATABASE_URL": database_url,
        "DRAYMAN_SECRET_KEY": SECRET_KEY,
        "DRAYMAN_BROKER_URL": d.env.get("DRAYMAN_BROKER_URL", "redis://unused.invalid:1/0"),
    }
    d.env.setdefault("DRAYMAN_BROKER_URL", needles["DRAYMAN_BROKER_URL"])
    halves = {"database password": _halves(PASSWORD), "secret key": _halves(SECRET_KEY)}
    source = (
        PROBE_DAG.replace(
            "@NEEDLES@", repr(json.dumps({k: _halves(v) for k, v in needles.items()}))
        )
        .replace("@KEY_FILE@", repr(str(d.home / "secret_key")))
        .replace("@HALVES@", repr(json.dumps(halves)))
        .replace("@REPORTS@", repr(str(_reports_dir(root))))
    )
    d.write_dag("probe.py", source)
    # the file a web server without DRAYMAN_SECRET_KEY makes on its first start
    load_secret_key(d.home, {})
    return d


def _reports_dir(root: Path) -> Path:
    reports = root / "top-level"
    reports.mkdir(exist_ok=True)
    reports.chmod(0o777)  # the DAG file's top level may run as the task user
    return reports


def _top_level_reports(root: Path) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {"parse": [], "try": []}
    for path in sorted(_reports_dir(root).glob("*.json")):
        report = json.loads(path.read_text())
        found[report["phase"]].append(report)
    return found


def _assert_top_level_saw_nothing(root: Path, user: pwd.struct_passwd, mains: set[int]) -> None:
    """The DAG file's top level, in the parser and in the try, ran as the task user, found no
    secret in an ancestor's environ (drayman's main processes `mains` unreadable), could not
    read the secret key, and held no socket."""
    reports = _top_level_reports(root)
    assert reports["parse"], f"the DAG file was never imported by the parser: {reports}"
    assert reports["try"], f"the DAG file was never imported for a try: {reports}"
    for report in reports["parse"] + reports["try"]:
        assert report["uid"] == report["euid"] == user.pw_uid, report
        assert report["key_file"] == "PermissionError", report
        assert report["sockets"] == [], report
        assert {str(pid) for pid in mains} & set(report["ancestors"]), report
        for pid, seen in report["ancestors"].items():
            assert seen.get("found", []) == [], (pid, report)
            if int(pid) in mains:
                assert seen == {"readable": False, "error": "PermissionError"}, (pid, report)


def _halves(value: str) -> list[str]:
    return [value[: len(value) // 2], value[len(value) // 2 :]]


def _probe(d: Drayman) -> dict[str, Any]:
    """Trigger the probe DAG, wait for its run, and return what the task reported."""
    d.wait_for(lambda: "probe" in d.dags_by_id(), 60, "the probe DAG to be parsed")
    run_id = d.trigger("probe")
    d.wait_run("probe", run_id, timeout=90)
    log = d.ok("tasks", "logs", "probe", run_id, "look_for_secrets")
    lines = [line for line in log.splitlines() if line.startswith("ISOLATION ")]
    assert lines, f"the task printed no report; its log:\n{log}"
    report: dict[str, Any] = json.loads(lines[-1].removeprefix("ISOLATION "))
    shell_log = d.ok("tasks", "logs", "probe", run_id, "shell_env")
    shell = [line for line in shell_log.splitlines() if line.startswith("SHELLENV ")]
    assert shell, f"the Shell task printed nothing; its log:\n{shell_log}"
    report["shell"] = shell[-1]
    return report


def _assert_nothing_found(report: dict[str, Any], user: pwd.struct_passwd) -> None:
    assert report["uid"] == report["euid"] == user.pw_uid, report
    assert report["shell"] == f"SHELLENV uid={user.pw_uid} secrets=0", report
    assert report["environ"] == [], report
    assert report["memory"] == [], report
    assert report["self"].get("found", []) == [], report
    assert report["ancestors"], report
    for pid, seen in report["ancestors"].items():
        assert seen.get("found", []) == [], f"secrets in /proc/{pid}/environ: {report}"
    assert report["home_traversable"] is True, report
    assert report["key_file"] == "PermissionError", report


def _key_file_is_private(d: Drayman) -> None:
    key_file = d.home / "secret_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert key_file.stat().st_uid == os.geteuid()


@pytest.mark.slow
def test_default_task_environment_holds_no_secret(open_root: Path, secret_database: str) -> None:
    """No run_as_user: the try, its warm worker and the forkserver hold no secret; only the
    main process's /proc environ (readable to root tasks: see docs/security.md)."""
    d = _installation(open_root, secret_database, web_port=str(_free_port()))
    with d.serve("standalone", "--no-examples") as server:
        report = _probe(d)

    assert report["environ"] == [], report
    assert report["self"]["found"] == [], report
    assert report["memory"] == [], report
    assert report["shell"] == "SHELLENV uid=0 secrets=0", report
    chain = report["ancestors"]
    main = str(server.pid)
    assert main in chain, f"the scheduler {main} is not among the task's ancestors: {report}"
    between = list(chain)[: list(chain).index(main)]
    assert len(between) == 2, f"expected warm worker and forkserver: {report}"
    for pid in between:
        assert chain[pid] == {"readable": True, "found": []}, report
    assert chain[main]["found"] == sorted(
        ["DRAYMAN_DATABASE_URL", "DRAYMAN_SECRET_KEY", "DRAYMAN_BROKER_URL"]
    ), report


@pytest.mark.slow
def test_local_executor_runs_tasks_as_the_configured_user(
    open_root: Path, secret_database: str, task_user: pwd.struct_passwd
) -> None:
    d = _installation(open_root, secret_database, web_port=str(_free_port()), run_as_user=TASK_USER)
    with d.serve("standalone", "--no-examples") as server:
        report = _probe(d)

    _assert_nothing_found(report, task_user)
    assert report["ancestors"][str(server.pid)]["readable"] is False, report
    _key_file_is_private(d)
    _assert_top_level_saw_nothing(open_root, task_user, {server.pid})


@pytest.mark.slow
def test_celery_worker_runs_tasks_as_the_configured_user(
    open_root: Path,
    secret_database: str,
    redis_broker: str,
    task_user: pwd.struct_passwd,
) -> None:
    d = _installation(
        open_root,
        secret_database,
        executor="celery",
        broker_url=redis_broker,
        run_as_user=TASK_USER,
    )
    d.ok("db", "migrate")
    worker = _start_worker(d)
    try:
        with d.serve("scheduler") as scheduler:
            report = _probe(d)
    finally:
        code = worker.stop()
    assert code == 0, worker.output()

    _assert_nothing_found(report, task_user)
    assert report["ancestors"][str(worker.pid)]["readable"] is False, report
    _key_file_is_private(d)
    _assert_top_level_saw_nothing(open_root, task_user, {scheduler.pid, worker.pid})


def _start_worker(d: Drayman) -> Server:
    output = d.root / "worker.out"
    with output.open("wb") as out:
        proc = subprocess.Popen(
            [str(DRAYMAN), "worker", "--grace", "5", "--concurrency", "1"],
            env=d.env,
            cwd=d.root,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = Server(proc, output, "worker")
    try:
        wait_until(
            lambda: worker.check_alive() or "ready." in worker.output(),
            60,
            "the Celery worker to be ready",
            last=worker.output,
        )
    except BaseException:
        worker.stop()
        worker.kill_group()
        raise
    return worker


def _tasks_test(d: Drayman) -> dict[str, Any]:
    """`drayman tasks test probe look_for_secrets`, and what the task reported."""
    out = d.ok("tasks", "test", "probe", "look_for_secrets", timeout=120)
    lines = [line for line in out.splitlines() if line.startswith("ISOLATION ")]
    assert lines, f"the task printed no report:\n{d.last}"
    report: dict[str, Any] = json.loads(lines[-1].removeprefix("ISOLATION "))
    return report


def test_tasks_test_holds_no_secret(open_root: Path) -> None:
    """`drayman tasks test` runs its try the way `dags test` and the scheduler do: not forked
    from the CLI process, whose /proc/<pid>/environ still holds the secrets."""
    d = _installation(open_root, f"postgresql://drayman:{PASSWORD}@127.0.0.1:1/unused")
    report = _tasks_test(d)
    assert report["environ"] == [], report
    assert report["self"] == {"readable": True, "found": []}, report
    assert report["memory"] == [], report


def test_tasks_test_runs_as_the_configured_user(
    open_root: Path, task_user: pwd.struct_passwd
) -> None:
    d = _installation(
        open_root,
        f"postgresql://drayman:{PASSWORD}@127.0.0.1:1/unused",
        run_as_user=TASK_USER,
    )
    report = _tasks_test(d)
    assert report["uid"] == report["euid"] == task_user.pw_uid, report
    assert report["environ"] == [], report
    assert report["self"].get("found", []) == [], report
    assert report["memory"] == [], report
    for pid, seen in report["ancestors"].items():
        assert seen.get("found", []) == [], f"secrets in /proc/{pid}/environ: {report}"
    assert report["key_file"] == "PermissionError", report
