"""`drayman queues list`: a queue with waiting tasks and no live worker says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import insert

from drayman.spec import DagSpec, TaskSpec
from drayman.states import TIState
from drayman.store import components, migrate
from drayman.store.engine import Store
from drayman.store.schema import task_instance

if TYPE_CHECKING:
    from support.seed import Seed

DRAYMAN = str(Path(sys.executable).parent / "drayman")


def seed_queues(seed: Seed, store: Store) -> None:
    # now, not at import: liveness is judged against the real clock when the CLI runs
    now = datetime.now(UTC)
    spec = DagSpec(
        dag_id="etl",
        fileloc="etl.py",
        tasks={"t": TaskSpec("t", "python", queue="default")},
    )
    with store.begin() as conn:
        seed.publish(conn, spec, bundle="v" * 64, now=now, source="")
        run_id = seed.run(conn, spec, "r1", bundle="v" * 64, now=now, start=False)
        for index, (queue, state) in enumerate(
            [("default", TIState.RUNNING), ("heavy", TIState.QUEUED), ("heavy", TIState.QUEUED)]
        ):
            conn.execute(
                insert(task_instance).values(
                    dag_run_id=run_id,
                    task_id=f"t{index}",
                    map_index=-1,
                    state=state,
                    try_number=1,
                    max_tries=1,
                    pool="default_pool",
                    queue=queue,
                )
            )
        components.register(
            conn,
            kind="worker",
            hostname="w1",
            pid=1,
            executor="celery",
            queues=["default"],
            concurrency=8,
            now=now,
        )
        stale = components.register(
            conn,
            kind="worker",
            hostname="w2",
            pid=2,
            executor="celery",
            queues=["heavy"],
            concurrency=8,
            now=now - timedelta(hours=1),
        )
        components.heartbeat(conn, stale, now - timedelta(hours=1))


def seeded_env(seed: Seed, tmp_path: Path, **settings: str) -> dict[str, str]:
    """The environment of a CLI on a fresh SQLite store holding the tasks and workers
    of `seed_queues`."""
    url = f"sqlite:///{tmp_path / 'drayman.db'}"
    store = Store(url)
    migrate.upgrade(store)
    seed_queues(seed, store)
    store.dispose()
    return {**os.environ, "DRAYMAN_HOME": str(tmp_path), "DRAYMAN_DATABASE_URL": url, **settings}


@pytest.mark.slow
def test_a_queue_nobody_serves_shows_as_waiting(seed: Seed, tmp_path: Path) -> None:
    env = seeded_env(seed, tmp_path)

    done = subprocess.run(
        [DRAYMAN, "queues", "list", "--json"], env=env, capture_output=True, text=True, check=True
    )

    by_queue = {item["queue"]: item for item in json.loads(done.stdout)}
    assert by_queue["default"] == {
        "queue": "default",
        "waiting": 0,
        "running": 1,
        "workers": 1,
        "concurrency": 8,
        "cap": None,  # the local executor: no per-queue cap
        "note": "",
    }
    # w2 serves "heavy" but stopped heartbeating an hour ago: nobody serves it now
    assert by_queue["heavy"]["waiting"] == 2
    assert by_queue["heavy"]["workers"] == 0
    assert by_queue["heavy"]["note"] == "no live worker serves this queue"
    text = subprocess.run(
        [DRAYMAN, "queues", "list"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "no live worker serves this queue" in text


@pytest.mark.slow
def test_with_celery_each_queue_shows_its_cap(seed: Seed, tmp_path: Path) -> None:
    env = seeded_env(
        seed,
        tmp_path,
        DRAYMAN_EXECUTOR="celery",
        DRAYMAN_BROKER_URL="redis://127.0.0.1:6379/0",
        DRAYMAN_CELERY_MIN_IN_FLIGHT="4",
    )

    done = subprocess.run(
        [DRAYMAN, "queues", "list", "--json"], env=env, capture_output=True, text=True, check=True
    )

    caps = {item["queue"]: item["cap"] for item in json.loads(done.stdout)}
    # default: twice its live worker's 8 slots; heavy: nobody serves it, the floor
    assert caps == {"default": 16, "heavy": 4}
    text = subprocess.run(
        [DRAYMAN, "queues", "list"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert text.splitlines()[0].split() == [
        "queue",
        "waiting",
        "running",
        "workers",
        "concurrency",
        "cap",
        "note",
    ], text
