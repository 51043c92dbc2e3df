"""The store's whole-table row types keep up with the schema they mirror."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from sqlalchemy import Table

from drayman.store import rows
from drayman.store.audit import AuditEventRow
from drayman.store.components import ComponentRow
from drayman.store.dags import ImportErrorRow
from drayman.store.pools import PoolRow
from drayman.store.schema import (
    app_user,
    audit_event,
    component,
    dag,
    dag_run,
    import_error,
    pool,
    task_instance,
    task_try,
)
from drayman.store.users import UserRow


@pytest.mark.parametrize(
    ("kind", "table"),
    [
        (rows.DagRow, dag),
        (rows.DagRunRow, dag_run),
        (rows.TaskInstanceRow, task_instance),
        (rows.TryRow, task_try),
        (ImportErrorRow, import_error),
        (UserRow, app_user),
        (PoolRow, pool),
        (ComponentRow, component),
        (AuditEventRow, audit_event),
    ],
)
def test_a_row_type_has_exactly_its_tables_columns_in_order(kind: type, table: Table) -> None:
    assert [f.name for f in dataclasses.fields(kind)] == [c.name for c in table.columns]


def test_a_locked_task_instance_is_a_task_instance_with_its_fence() -> None:
    names = [f.name for f in dataclasses.fields(rows.LockedTaskInstance)]

    assert names == [c.name for c in task_instance.columns] + ["fence"]


def test_rows_are_frozen_values() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    run = rows.DagRunRow(
        **{f.name: None for f in dataclasses.fields(rows.DagRunRow)} | {"created_at": now}
    )

    with pytest.raises(dataclasses.FrozenInstanceError):
        run.state = "running"  # type: ignore[misc]
    assert run == dataclasses.replace(run)
