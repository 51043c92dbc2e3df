"""A real scheduler on a real database: DAG files, the DAG processor, a LocalExecutor.

`scheduler_harness(files, **settings)` writes the DAG files into tmp_path/dags, publishes them
with the DAG processor, starts a `Scheduler` with a real `LocalExecutor`, and returns a
`Harness` whose `drive(until=...)` ticks the loop (sleeping on the executor's wake-up fd
between ticks) until a condition on the store holds. Every scheduler started here is stopped
when the test ends.

In DAG sources, `@MARKERS@` is replaced by a directory the test can look into: tasks and
callbacks leave marker files there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from throwaway import (
    RabbitMQ,
    Redis,
    limited_memory_cgroup,
    own_database,
    running_rabbitmq,
    running_redis,
)

from drayman.config import Settings
from drayman.dag_processor.processor import DagProcessor
from drayman.executors.local import LocalExecutor
from drayman.scheduler.loop import Scheduler
from drayman.store.engine import Store
from support.harness import Harness, MakeHarness, write_dag
from support.seed import Seed
from support.services import missing


@pytest.fixture
def scheduler_harness(store: Store, tmp_path: Path) -> Iterator[MakeHarness]:
    """Build a started scheduler from DAG sources (see the module docstring)."""
    started: list[Scheduler] = []

    def make(files: dict[str, str], /, **overrides: Any) -> Harness:
        markers = tmp_path / "markers"
        markers.mkdir(exist_ok=True)
        values: dict[str, Any] = {
            "home": tmp_path / "home",
            "dags_folder": tmp_path / "dags",
            "database_url": store.url,
            "parallelism": 4,
            "heartbeat_interval_s": 0.2,
            "heartbeat_timeout_s": 2,
            "scheduler_poll_s": 0.2,
            "parse_timeout_s": 20,
        }
        settings = Settings(**{**values, **overrides})
        for name, source in files.items():
            write_dag(settings.dags_folder, name, source, markers)
        processor = DagProcessor(settings, store)
        version = processor.tick()
        assert version is not None, f"the DAG folder was not published: {processor.problem}"
        executor = LocalExecutor(settings)
        scheduler = Scheduler(settings, store, executor)
        scheduler.start()
        started.append(scheduler)
        return Harness(settings, store, processor, executor, scheduler, markers, started)

    yield make
    for scheduler in started:
        scheduler.stop(grace_s=5)


@pytest.fixture
def seed() -> Seed:
    """A DAG and its runs put straight into the store (see `Seed`)."""
    return Seed()


# -- servers and databases of a test's own (throwaway.py) -------------------------------------


@pytest.fixture(params=["postgresql", "mariadb"])
def chaos_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a migrated database of this test's own, on PostgreSQL then on MariaDB."""
    # the session fixture checks the server is there (skip, or fail under CI)
    fixture = "postgres_url" if request.param == "postgresql" else "mysql_url"
    with own_database(request.getfixturevalue(fixture)) as url:
        yield url


@pytest.fixture(scope="module")
def database(postgres_url: str) -> Iterator[str]:
    """A migrated PostgreSQL database of this module's own, beside the session's one."""
    with own_database(postgres_url) as url:
        yield url


@pytest.fixture
def throwaway_redis(tmp_path: Path) -> Iterator[Redis]:
    """A Redis of this test's own, which it may SIGKILL and start again empty."""
    with running_redis(tmp_path) as server:
        yield server


@pytest.fixture
def throwaway_rabbitmq(tmp_path: Path) -> Iterator[RabbitMQ]:
    """A RabbitMQ node of this test's own, which it may SIGKILL and start again empty."""
    with running_rabbitmq(tmp_path) as server:
        yield server


@pytest.fixture
def memory_cgroup() -> Iterator[Path]:
    """A fresh memory cgroup limited to 64 MiB (a process moves in by writing its pid to
    `cgroup.procs`); skipped, or failed under CI=true, where this machine allows none."""
    with limited_memory_cgroup() as cgroup:
        if cgroup is None:
            missing(
                "no memory cgroup can be made here (cgroup v1 memory, or v2 with memory "
                "delegated); a real OOM kill needs one"
            )
        yield cgroup
