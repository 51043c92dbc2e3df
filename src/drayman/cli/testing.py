"""`dags test` and `tasks test`: run user code right here, against a throwaway database.

Nothing touches the real metadata database: the DAG folder is packed and parsed into a
temporary SQLite store, so testing a DAG on a laptop never disturbs production state.
"""

from __future__ import annotations

import selectors
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click

from drayman.cli.common import duration, prepare_task_environment, print_table, who
from drayman.config import Settings
from drayman.exceptions import DraymanError, NotFoundError
from drayman.store.engine import Store


@contextmanager
def scratch_store(settings: Settings) -> Iterator[tuple[Settings, Store, str]]:
    """A temporary home and SQLite store holding the DAG folder's current bundle."""
    from drayman.dag_processor.processor import DagProcessor
    from drayman.store import bundles as bundle_store
    from drayman.store import dags as dag_store
    from drayman.store import pools
    from drayman.store import scratch as scratch_db

    # tasks keep their files under the real home, not the scratch one
    prepare_task_environment(settings)
    with tempfile.TemporaryDirectory(prefix="drayman-test-") as tmp:
        # with run_as_user, the parser and the tries read the bundle in there as that user;
        # they may pass through, not list it (the database in it is 0600 anyway)
        Path(tmp).chmod(0o711)
        scratch = settings.with_overrides(home=Path(tmp), database_url="")
        store = Store(scratch.effective_database_url)
        scratch_db.create_schema(store)
        try:
            with store.begin() as conn:
                pools.ensure_default(conn, scratch.default_pool_slots)
            DagProcessor(scratch, store).tick()
            with store.read() as conn:
                version = bundle_store.latest_deployed_version(conn)
                errors = dag_store.import_errors(conn, version) if version else []
            for error in errors:
                line = f":{error.lineno}" if error.lineno else ""
                click.echo(f"import error: {error.fileloc}{line}: {error.message}", err=True)
            if version is None:
                raise DraymanError(f"no bundle could be made from {settings.dags_folder}")
            yield scratch, store, version
        finally:
            store.dispose()


def _require_dag(store: Store, dag_id: str, settings: Settings) -> None:
    from drayman.store import dags as dag_store

    try:
        with store.read() as conn:
            dag_store.get_dag(conn, dag_id)
    except NotFoundError:
        raise NotFoundError(
            f"no DAG {dag_id!r} in {settings.dags_folder} (see the import errors above, if any)"
        ) from None


def run_dag_once(
    settings: Settings, dag_id: str, *, conf: dict[str, Any], logical_date: datetime | None
) -> bool:
    """Run one manual run of `dag_id` to its end; True if it succeeded."""
    from drayman import run_creation
    from drayman.executors.local import LocalExecutor
    from drayman.scheduler.loop import Scheduler
    from drayman.states import RunState
    from drayman.store import runs as run_store
    from drayman.store import scratch as scratch_db

    with scratch_store(settings) as (scratch, store, _version):
        _require_dag(store, dag_id, settings)
        with store.begin() as conn:
            scratch_db.pause_every_dag(conn)  # only our manual run, please
            run_id = run_creation.trigger(
                conn,
                dag_id,
                conf=conf,
                triggered_by=who(),
                now=store.now(),
                logical_date=logical_date,
            )
        click.echo(f"[drayman] testing {dag_id}: run {run_id}", err=True)
        executor = LocalExecutor(scratch, echo_logs=True, min_warm=1)
        scheduler = Scheduler(scratch, store, executor, immediate_retries=True)
        scheduler.start()
        try:
            state = _drive(scheduler, executor)
        finally:
            scheduler.stop(grace_s=5.0)
        with store.read() as conn:
            run = run_store.get_run(conn, dag_id, run_id)
        _print_summary(store, run)
        click.echo(f"[drayman] run {run_id}: {state}", err=True)
        return state == RunState.SUCCESS


def _drive(scheduler: Any, executor: Any) -> str:
    selector = selectors.DefaultSelector()
    fd = executor.fileno()
    if fd is not None:
        selector.register(fd, selectors.EVENT_READ)
    try:
        while True:
            report = scheduler.tick()
            if report.finished_runs:
                return str(report.finished_runs[0][1])
            if not report.progressed:
                selector.select(timeout=0.2)
    finally:
        selector.close()


def _print_summary(store: Store, run: Any) -> None:
    from drayman.store import try_history

    with store.read() as conn:
        rows = try_history.tries_of_run(conn, run.id)
    print_table(
        ["task", "try", "state", "duration", "error"],
        [
            [
                _task_label(r),
                r.try_number or "",
                r.state or r.ti_state,
                duration(r.start_date, r.end_date),
                (r.error or "")[:80],
            ]
            for r in rows
        ],
    )


def _task_label(row: Any) -> str:
    return row.task_id if row.map_index < 0 else f"{row.task_id}[{row.map_index}]"


def run_task_once(
    settings: Settings,
    dag_id: str,
    task_id: str,
    *,
    conf: dict[str, Any],
    logical_date: datetime | None,
    map_index: int,
) -> bool:
    """Run one try of one task, ignoring dependencies; True if it succeeded.

    In a warm worker of a local executor, as `dags test` and the scheduler do: a try forked
    from this process would find drayman's secrets in /proc/self/environ (the environment
    this process started with), and would not run as `run_as_user`.
    """
    from drayman.conf import validate_conf
    from drayman.store import dags as dag_store
    from drayman.workloads import RunContextData, TryWorkload, log_relpath

    with scratch_store(settings) as (scratch, store, version):
        _require_dag(store, dag_id, settings)
        with store.read() as conn:
            spec = dag_store.load_spec(conn, dag_id, dag_store.get_dag(conn, dag_id).bundle_version)
        if task_id not in spec.tasks:
            raise NotFoundError(
                f"DAG {dag_id!r} has no task {task_id!r}; its tasks: {', '.join(spec.tasks)}"
            )
        task = spec.tasks[task_id]
        when = (logical_date or datetime.now(UTC)).astimezone(UTC)
        local = when.astimezone(ZoneInfo(spec.timezone)).isoformat()
        upstream = _missing_upstream(task)
        run_id = f"test__{when.isoformat()}"
        workload = TryWorkload(
            try_id=0,
            ti_id=0,
            task_id=task_id,
            map_index=map_index,
            try_number=1,
            max_tries=1,
            fileloc=spec.fileloc,
            run=RunContextData(
                dag_id=dag_id,
                run_id=run_id,
                run_type="manual",
                logical_date=local,
                data_interval_start=local,
                data_interval_end=local,
                timezone=spec.timezone,
                bundle_version=version,
                params=validate_conf(spec.params, conf),
                conf=conf,
            ),
            upstream_results=upstream,
            execution_timeout_s=task.execution_timeout_s,
            queue=task.queue,
            log_path=log_relpath(dag_id, run_id, task_id, map_index, 1),
        )
        outcome = _run_alone(scratch, workload)
    state = "success" if outcome.succeeded else f"failed: {outcome.error}"
    click.echo(f"[drayman] {dag_id}.{task_id}: {state}", err=True)
    if outcome.result_json is not None:
        click.echo(f"[drayman] result: {outcome.result_json}", err=True)
    return outcome.succeeded


def _run_alone(settings: Settings, workload: Any) -> Any:
    """Run one try in a local executor of its own (its log echoed) and return its outcome
    once the task's callbacks, which the worker runs after reporting it, are over too."""
    from drayman.executors.local import LocalExecutor
    from drayman.workloads import TryOutcome

    executor = LocalExecutor(settings, echo_logs=True, min_warm=1)
    selector = selectors.DefaultSelector()
    executor.start()
    try:
        fd = executor.fileno()
        if fd is not None:
            selector.register(fd, selectors.EVENT_READ)
        executor.submit([workload])
        outcome = None
        while outcome is None or executor.open_slots() < settings.parallelism:
            for event in executor.events():
                if isinstance(event, TryOutcome) and event.try_id == workload.try_id:
                    outcome = event
            selector.select(timeout=0.2)
        return outcome
    finally:
        selector.close()
        executor.stop(grace_s=0)


def _missing_upstream(task: Any) -> dict[str, Any]:
    from drayman.spec import referenced_tasks

    wanted = referenced_tasks(task.args) | referenced_tasks(task.expand or {})
    for name in sorted(wanted):
        click.echo(
            f"[drayman] note: {task.task_id} takes the result of {name!r}; "
            "`tasks test` passes None for it (use `dags test` for the real value)",
            err=True,
        )
    return dict.fromkeys(wanted)
