"""The Celery app's settings and the executor's choice, without a broker."""

from __future__ import annotations

import logging

import pytest

from drayman.cli.serve import _executor
from drayman.config import Settings
from drayman.exceptions import ConfigError, ExecutorError
from drayman.executors.celery import (
    RUN_CALLBACK,
    RUN_TRIES,
    RUN_TRY,
    CeleryExecutor,
    make_app,
    messages_of,
)
from drayman.workloads import RunContextData, TryWorkload


def test_the_app_speaks_json_only_and_acknowledges_late() -> None:
    app = make_app(Settings(broker_url="redis://127.0.0.1:6379/0", broker_visibility_timeout_s=90))
    conf = app.conf
    assert (conf.task_serializer, list(conf.accept_content)) == ("json", ["json"])
    assert conf.result_backend is None and conf.task_ignore_result
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_connection_retry_on_startup
    assert conf.broker_transport_options == {"visibility_timeout": 90}
    assert {RUN_TRIES, RUN_TRY, RUN_CALLBACK} <= set(app.tasks)


def test_rabbitmq_needs_no_visibility_timeout() -> None:
    app = make_app(Settings(broker_url="amqp://guest:guest@127.0.0.1:5672//"))
    assert not app.conf.broker_transport_options


def test_a_missing_broker_url_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="DRAYMAN_BROKER_URL"):
        make_app(Settings())


def test_the_scheduler_picks_the_celery_executor() -> None:
    executor = _executor(Settings(executor="celery", broker_url="redis://127.0.0.1:6379/0"))
    assert isinstance(executor, CeleryExecutor)
    assert executor.open_slots() == 0  # not started
    assert executor.events() == [] and executor.fileno() is None


def _try(try_id: int, queue: str) -> TryWorkload:
    run = RunContextData(
        dag_id="d",
        run_id="r",
        run_type="manual",
        logical_date="2024-01-01T00:00:00+00:00",
        data_interval_start="2024-01-01T00:00:00+00:00",
        data_interval_end="2024-01-01T00:00:00+00:00",
        timezone="UTC",
        bundle_version="v",
    )
    return TryWorkload(
        try_id=try_id,
        ti_id=try_id,
        task_id=f"t{try_id}",
        map_index=-1,
        try_number=1,
        max_tries=1,
        fileloc="f.py",
        run=run,
        queue=queue,
    )


def test_tries_travel_in_pairs_of_one_queue_in_the_order_given() -> None:
    workloads = [_try(1, "default"), _try(2, "heavy"), _try(3, "default"), _try(4, "default")]
    workloads += [_try(5, "heavy")]

    assert messages_of(workloads) == [
        ("default", [1, 3]),
        ("default", [4]),
        ("heavy", [2, 5]),
    ]


def test_a_lone_try_travels_alone() -> None:
    assert messages_of([_try(7, "default")]) == [("default", [7])]


def test_the_celery_floor_under_its_old_name_is_logged_as_the_executor_starts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings.load(
        environ={
            "DRAYMAN_EXECUTOR": "celery",
            "DRAYMAN_BROKER_URL": "redis://127.0.0.1:1/0",  # nothing listens: start() fails
            "DRAYMAN_PARALLELISM": "7",
        }
    )
    with (
        caplog.at_level(logging.WARNING, logger="drayman.executors.celery"),
        pytest.raises(ExecutorError, match="cannot reach the broker"),
    ):
        CeleryExecutor(settings).start()

    [record] = [r for r in caplog.records if r.getMessage().startswith("config.deprecated")]
    assert "DRAYMAN_CELERY_MIN_IN_FLIGHT" in record.getMessage()
