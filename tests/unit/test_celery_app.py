"""The Celery app's settings and the executor's choice, without a broker."""

from __future__ import annotations

import pytest

from drayman.cli.serve import _executor
from drayman.config import Settings
from drayman.exceptions import ConfigError
from drayman.executors.celery import RUN_CALLBACK, RUN_TRY, CeleryExecutor, make_app


def test_the_app_speaks_json_only_and_acknowledges_late() -> None:
    app = make_app(Settings(broker_url="redis://127.0.0.1:6379/0", broker_visibility_timeout_s=90))
    conf = app.conf
    assert (conf.task_serializer, list(conf.accept_content)) == ("json", ["json"])
    assert conf.result_backend is None and conf.task_ignore_result
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_connection_retry_on_startup
    assert conf.broker_transport_options == {"visibility_timeout": 90}
    assert {RUN_TRY, RUN_CALLBACK} <= set(app.tasks)


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
