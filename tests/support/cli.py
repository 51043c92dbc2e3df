"""The real `drayman` CLI as subprocesses, for acceptance tests (their fixtures, in
tests/acceptance/conftest.py, build these).

`Drayman` is one installation: a DRAYMAN_HOME, a DAG folder and (optionally) a database URL,
with short poll settings. `cli(*args)` runs one command and returns the CompletedProcess;
`serve()` starts `drayman scheduler` or `drayman standalone` in its own process group and
stops it with SIGTERM, requiring exit code 0. Waiting for something is polling a CLI command
with a deadline (`wait_until`), never a fixed sleep: a timeout names what was awaited and shows
the last output, and fails at once, with the server's output, if a server died meanwhile.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import create_engine, text

from support.waiting import wait_until

DRAYMAN = Path(sys.executable).parent / "drayman"
TERMINAL_RUN_STATES = ("success", "failed")
T = TypeVar("T")

FAST_SETTINGS = {
    "DRAYMAN_DAGS_POLL_S": "0.5",
    "DRAYMAN_SCHEDULER_POLL_S": "0.5",
    "DRAYMAN_HEARTBEAT_INTERVAL_S": "1",
    "DRAYMAN_HEARTBEAT_TIMEOUT_S": "20",
    "DRAYMAN_PARALLELISM": "4",
}


def describe(proc: subprocess.CompletedProcess[str]) -> str:
    command = " ".join(str(a) for a in proc.args)
    return (
        f"$ {command}\nexit code {proc.returncode}\n"
        f"--- stdout ---\n{proc.stdout}--- stderr ---\n{proc.stderr}"
    )


class Server:
    """A running `drayman scheduler` or `drayman standalone`, its output in a file."""

    def __init__(self, proc: subprocess.Popen[bytes], output_path: Path, command: str) -> None:
        self.proc = proc
        self.output_path = output_path
        self.command = command

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def check_alive(self) -> None:
        code = self.proc.poll()
        if code is not None:
            pytest.fail(
                f"`drayman {self.command}` (pid {self.pid}) exited early with code {code}; "
                f"its output:\n{self.output()}"
            )

    def wait_output(self, needle: str, timeout: float = 30.0) -> None:
        def seen() -> bool:
            self.check_alive()
            return needle in self.output()

        wait_until(
            seen,
            timeout,
            f"{needle!r} in the output of drayman {self.command}",
            last=self.output,
            interval_s=0.1,
        )

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then wait; SIGKILL to the whole group if it will not go. The exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill_group()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def kill_group(self) -> None:
        """Whatever is left of the process group this server leads (it was its own session)."""
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)


class Drayman:
    """One drayman installation in a temp dir, driven only through its CLI."""

    def __init__(self, root: Path, *, database_url: str | None = None, **settings: str) -> None:
        self.root = root
        self.home = root / "home"
        self.dags = root / "dags"
        self.home.mkdir(parents=True, exist_ok=True)
        self.dags.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DRAYMAN_")}
        env.update(FAST_SETTINGS)
        env["DRAYMAN_HOME"] = str(self.home)
        env["DRAYMAN_DAGS_FOLDER"] = str(self.dags)
        if database_url:
            env["DRAYMAN_DATABASE_URL"] = database_url
        env.update({f"DRAYMAN_{k.upper()}": str(v) for k, v in settings.items()})
        self.env = env
        self.last = ""  # what the last command printed, for failure messages
        self.servers: list[Server] = []

    # ------------------------------------------------------------------ one command

    def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run `drayman *args` to its end and return what happened (any exit code)."""
        proc = subprocess.run(
            [str(DRAYMAN), *args],
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        self.last = describe(proc)
        return proc

    def ok(self, *args: str, timeout: float = 60.0) -> str:
        """Run a command that must succeed; its stdout."""
        proc = self.cli(*args, timeout=timeout)
        assert proc.returncode == 0, f"command failed:\n{self.last}"
        return proc.stdout

    def json(self, *args: str) -> Any:
        """Run a command with --json that must succeed; the parsed document."""
        out = self.ok(*args, "--json")
        try:
            return json.loads(out)
        except ValueError:
            pytest.fail(f"not JSON:\n{self.last}")

    # ------------------------------------------------------------------ the DAG folder

    def write_dag(self, name: str, source: str) -> Path:
        """Write (or replace, atomically) one file of the DAG folder."""
        path = self.dags / name
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".py")
        with os.fdopen(fd, "w") as handle:
            handle.write(textwrap.dedent(source).lstrip())
        os.replace(tmp, path)
        return path

    # ------------------------------------------------------------------ runs and DAGs

    def dags_by_id(self, *flags: str) -> dict[str, dict[str, Any]]:
        return {d["dag_id"]: d for d in self.json("dags", "list", *flags)}

    def runs(self, dag_id: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        args = ["runs", "list", "--limit", str(limit)]
        if dag_id:
            args += ["--dag", dag_id]
        runs: list[dict[str, Any]] = self.json(*args)
        return runs

    def show(self, dag_id: str, run_id: str) -> dict[str, Any]:
        shown: dict[str, Any] = self.json("runs", "show", run_id, "--dag", dag_id)
        return shown

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        args = ["dags", "trigger", dag_id]
        if conf is not None:
            args += ["--conf", json.dumps(conf)]
        run_id: str = self.json(*args)["run_id"]
        return run_id

    def wait_for(
        self, predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.3
    ) -> T:
        """`wait_until` that fails at once if a server of this installation has died, showing
        the last CLI output on a timeout."""

        def check() -> T:
            for server in self.servers:
                server.check_alive()
            return predicate()

        return wait_until(check, timeout, what, last=lambda: self.last, interval_s=interval)

    def wait_run(
        self,
        dag_id: str,
        run_id: str,
        state: str | Sequence[str] = "success",
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        """Wait until the run has finished; require it ended in `state`; `runs show` of it."""

        def finished() -> dict[str, Any] | None:
            shown = self.show(dag_id, run_id)
            return shown if shown["state"] in TERMINAL_RUN_STATES else None

        shown = self.wait_for(finished, timeout, f"run {dag_id} {run_id} to finish")
        wanted = (state,) if isinstance(state, str) else tuple(state)
        assert shown["state"] in wanted, (
            f"run {dag_id} {run_id} ended {shown['state']}, expected {wanted}:\n"
            + json.dumps(shown, indent=2)
        )
        return shown

    # ------------------------------------------------------------------ long-running processes

    @contextmanager
    def serve(self, command: str = "scheduler", *args: str, grace: float = 5.0) -> Iterator[Server]:
        """Run `drayman <command>` until the block ends; then SIGTERM, and it must exit 0."""
        output_path = self.root / f"{command}-{len(self.servers)}-{time.monotonic_ns()}.out"
        with output_path.open("wb") as out:
            proc = subprocess.Popen(
                [str(DRAYMAN), command, "--grace", str(grace), *args],
                env=self.env,
                cwd=self.root,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = Server(proc, output_path, command)
        self.servers.append(server)
        try:
            server.wait_output("scheduler.started")
            yield server
        except BaseException:
            print(f"--- output of drayman {command} (pid {server.pid}) ---\n{server.output()}")
            raise
        finally:
            self.servers.remove(server)
            code = server.stop()
            server.kill_group()
        assert code == 0, (
            f"`drayman {command}` exited with code {code} after SIGTERM; its output:\n"
            f"{server.output()}"
        )


def empty_postgres(url: str) -> str:
    """Drop everything in the throwaway database at `url`, so a test starts from nothing."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()
    return url
