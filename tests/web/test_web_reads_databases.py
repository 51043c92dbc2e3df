"""The web's read queries (store/history.py via web/reads.py) on SQLite, PostgreSQL and
MariaDB: filters, paging and totals agree on every database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from drayman.spec import DagSpec, ParsedDag, TaskSpec
from drayman.store import dags as dag_store
from drayman.store import runs as run_store
from drayman.store.engine import Store
from drayman.web import reads
from drayman.web.reads import Paging

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def _publish(store: Store) -> None:
    specs = [
        DagSpec(
            dag_id=dag_id,
            fileloc=f"{dag_id}.py",
            tags=tags,
            tasks={"a": TaskSpec("a", "python"), "b": TaskSpec("b", "python", upstream=("a",))},
        )
        for dag_id, tags in (("alpha_50%", ("x_y",)), ("beta", ("xzy",)), ("gamma", ()))
    ]
    with store.begin() as conn:
        dag_store.record_parse(
            conn,
            bundle_version="v1",
            dags=[ParsedDag(s, "# code") for s in specs],
            errors=[],
            now=NOW,
        )
        from drayman import run_creation

        for day in range(3):
            when = NOW + timedelta(days=day)
            run_creation.trigger(
                conn, "beta", conf={}, triggered_by="t", now=when, run_id=f"r{day}"
            )
        run = run_store.get_run(conn, "beta", "r2")
        run_store.start_run(conn, run, specs[1], NOW)


def test_filters_paging_and_totals(store: Store) -> None:
    _publish(store)
    page = reads.dag_list(store, tag="x_y", search=None, paused=None, paging=Paging())
    assert [d["dag_id"] for d in page["items"]] == ["alpha_50%"], "_ in a tag is not a wildcard"
    page = reads.dag_list(store, tag=None, search="50%", paused=None, paging=Paging())
    assert page["total"] == 1, "% in a search is not a wildcard"
    page = reads.dag_list(store, tag=None, search=None, paused=False, paging=Paging(1, 1), recent=2)
    assert page["total"] == 3 and [d["dag_id"] for d in page["items"]] == ["beta"], page
    assert [r["run_id"] for r in page["items"][0]["recent_runs"]] == ["r2", "r1"]
    runs = reads.run_list(
        store,
        "beta",
        state="queued",
        since=NOW + timedelta(days=1),
        until=None,
        paging=Paging(1, 0),
    )
    assert runs["total"] == 1 and [r["run_id"] for r in runs["items"]] == ["r1"], runs
    tis = reads.task_instances(store, "beta", "r2", Paging())
    assert [t["task_id"] for t in tis["items"]] == ["a", "b"], tis
