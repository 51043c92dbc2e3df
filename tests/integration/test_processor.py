"""DagProcessor against SQLite, PostgreSQL and MariaDB, with real parse subprocesses."""

from __future__ import annotations

import json
import logging
import textwrap
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from drayman.config import Settings
from drayman.dag_processor import processor as processor_module
from drayman.dag_processor.processor import DagProcessor
from drayman.store.engine import Store
from drayman.store.schema import bundle, dag, deploy, import_error, serialized_dag

ALPHA = """
    from drayman import DAG, Shell

    with DAG("alpha", schedule="{schedule}", start_date="2024-01-01"):
        Shell("extract", command="echo extract")
"""

BETA = """
    from drayman import DAG, Shell

    with DAG("beta", schedule=None):
        Shell("load", command="echo load")
"""

BROKEN = """
    from drayman import DAG

    raise RuntimeError("cannot reach the warehouse")
"""


def write(folder: Path, relpath: str, code: str, **values: str) -> None:
    path = folder / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    text = textwrap.dedent(code).lstrip("\n")
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    path.write_text(text)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", dags_folder=tmp_path / "dags", parse_timeout_s=10)


def rows(store: Store, table: Any, *where: Any) -> list[Any]:
    with store.read() as conn:
        return list(conn.execute(select(table).where(*where)))


def count(store: Store, table: Any) -> int:
    with store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def dag_row(store: Store, dag_id: str) -> Any:
    (row,) = rows(store, dag, dag.c.dag_id == dag_id)
    return row


def test_first_tick_publishes_then_nothing_until_a_change(
    store: Store,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    write(settings.dags_folder, "alpha.py", ALPHA, schedule="@daily")
    write(settings.dags_folder, "broken.py", BROKEN)
    processor = DagProcessor(settings, store)

    with caplog.at_level(logging.INFO, logger="drayman.dag_processor.processor"):
        version = processor.tick()

    assert version is not None and len(version) == 64
    assert [r.version for r in rows(store, bundle)] == [version]
    (spec,) = rows(store, serialized_dag)
    assert (spec.dag_id, spec.bundle_version, spec.fileloc) == ("alpha", version, "alpha.py")
    assert json.loads(spec.spec)["schedule"] == "@daily"
    assert dag_row(store, "alpha").bundle_version == version
    (error,) = rows(store, import_error)
    assert (error.bundle_version, error.fileloc, error.lineno) == (version, "broken.py", 3)
    (published,) = rows(store, deploy)
    assert (published.bundle_version, published.source) == (version, "folder")
    assert "@" in published.created_by
    assert json.loads(published.changes)["added"] == ["alpha.py", "broken.py"]
    assert (settings.bundle_cache / version / "alpha.py").is_file()
    assert f"bundle.published version={version[:12]} files=2 dags=1 errors=1" in caplog.text

    # nothing changed: a stat walk, no packing, no parsing
    monkeypatch.setattr(processor_module, "pack", _must_not_pack)
    assert processor.tick() is None
    monkeypatch.undo()

    # a restarted processor packs once, finds the version live, and publishes nothing
    assert DagProcessor(settings, store).tick() is None
    assert count(store, deploy) == 1

    # `drayman deploy` publishes even an unchanged version, as a new deploy
    assert DagProcessor(settings, store).publish("alice@ci", "deploy") == version
    assert count(store, bundle) == 1
    latest = rows(store, deploy, deploy.c.created_by == "alice@ci")
    assert [(r.bundle_version, r.source) for r in latest] == [(version, "deploy")]


def test_edits_additions_and_deletions_are_picked_up(store: Store, settings: Settings) -> None:
    folder = settings.dags_folder
    write(folder, "alpha.py", ALPHA, schedule="@daily")
    processor = DagProcessor(settings, store)
    first = processor.tick()

    write(folder, "alpha.py", ALPHA, schedule="@hourly")
    write(folder, "beta.py", BETA)
    second = processor.tick()
    assert second not in {None, first}
    assert dag_row(store, "alpha").bundle_version == second
    assert dag_row(store, "alpha").schedule == "@hourly"
    assert dag_row(store, "beta").is_active
    changes = json.loads(rows(store, deploy, deploy.c.bundle_version == second)[0].changes)
    assert changes == {"added": ["beta.py"], "removed": [], "changed": ["alpha.py"]}

    (folder / "beta.py").unlink()
    third = processor.tick()
    assert third not in {None, first, second}
    assert not dag_row(store, "beta").is_active
    assert dag_row(store, "alpha").is_active

    # a broken edit: the DAG stays live on its last good version, and the error is stored
    write(folder, "alpha.py", BROKEN)
    fourth = processor.tick()
    assert fourth not in {None, third}
    alpha = dag_row(store, "alpha")
    assert (alpha.bundle_version, alpha.is_active) == (third, True)
    errors = rows(store, import_error, import_error.c.bundle_version == fourth)
    assert [(e.fileloc, e.lineno) for e in errors] == [("alpha.py", 3)]
    assert count(store, deploy) == 4


def test_missing_folder_is_reported_once_and_publishes_nothing(
    sqlite_store: Store, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    processor = DagProcessor(settings, sqlite_store)

    with caplog.at_level(logging.WARNING, logger="drayman.dag_processor.processor"):
        assert processor.tick() is None
        assert processor.tick() is None

    assert count(sqlite_store, deploy) == 0
    assert processor.problem is not None and "does not exist" in processor.problem
    (record,) = caplog.records
    assert record.getMessage().startswith("bundle.not_published error=DAG folder ")
    assert "set DRAYMAN_DAGS_FOLDER" in record.getMessage()


def test_a_folder_without_dags_publishes_an_empty_bundle(
    sqlite_store: Store, settings: Settings
) -> None:
    write(settings.dags_folder, "README.md", "# our DAGs\n")

    version = DagProcessor(settings, sqlite_store).tick()

    assert version is not None
    assert count(sqlite_store, serialized_dag) == 0
    assert count(sqlite_store, deploy) == 1


def _must_not_pack(folder: Path) -> None:
    raise AssertionError(f"packed {folder} although nothing changed")
