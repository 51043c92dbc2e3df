"""Runs put straight into the store, for tests of what the store does with them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from drayman.spec import DagSpec, ParsedDag
from drayman.states import RunType
from drayman.store import dags as dag_store
from drayman.store import runs as run_store


class Seed:
    """Puts a DAG and its runs straight into the store, without a DAG processor or scheduler:
    for tests of what the store does with a run, one transaction at a time."""

    @staticmethod
    def publish(
        conn: Connection, spec: DagSpec, *, bundle: str, now: datetime, source: str = "# source\n"
    ) -> None:
        """Record `spec` as parsed from bundle version `bundle`."""
        dag_store.record_parse(
            conn, bundle_version=bundle, dags=[ParsedDag(spec, source)], errors=[], now=now
        )

    @staticmethod
    def run(
        conn: Connection,
        spec: DagSpec,
        run_id: str,
        *,
        bundle: str,
        now: datetime,
        start: bool = True,
        triggered_by: str = "test",
    ) -> int:
        """A manual run of a published `spec` at `now`, started (its task instances created)
        unless `start` is false; its primary key."""
        pk = run_store.create_run(
            conn,
            dag_id=spec.dag_id,
            run_id=run_id,
            run_type=RunType.MANUAL,
            bundle_version=bundle,
            logical_date=now,
            data_interval_start=now,
            data_interval_end=now,
            run_after=now,
            conf={},
            params={},
            triggered_by=triggered_by,
            now=now,
        )
        if start:
            run_store.start_run(conn, run_store.get_run_by_id(conn, pk), spec, now)
        return pk
