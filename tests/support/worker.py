"""A real `drayman worker` subprocess for tests of remote execution."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

CLI = [sys.executable, "-c", "from drayman.cli.main import main; main()"]


@dataclass
class Worker:
    """A `drayman worker` subprocess."""

    process: subprocess.Popen[bytes]
    output: Path
    env: dict[str, str]

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_for_line(self, needle: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.log():
            if time.monotonic() > deadline or self.process.poll() is not None:
                pytest.fail(f"the worker never logged {needle!r}; its output:\n{self.log()}")
            time.sleep(0.05)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"the worker ignored SIGTERM; its output:\n{self.log()}")


def start_worker(
    database: str, broker: str, home: Path, *queues: str, env: dict[str, str] | None = None
) -> Worker:
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DRAYMAN_DATABASE_URL": database,
        "DRAYMAN_BROKER_URL": broker,
        "DRAYMAN_HOME": str(home),
        "DRAYMAN_EXECUTOR": "celery",
        "DRAYMAN_HEARTBEAT_INTERVAL_S": "0.5",
        **(env or {}),
    }
    output = home / "worker.out"
    with open(output, "wb") as out:
        process = subprocess.Popen(
            [*CLI, "worker", "--queues", ",".join(queues or ("default",)), "--concurrency", "2"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    worker = Worker(process, output, env)
    worker.wait_for_line("ready.", timeout=20)  # Celery's own line: consuming from its queues
    return worker
