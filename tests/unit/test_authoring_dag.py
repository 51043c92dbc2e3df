"""DAG construction: checks and their messages, dates, defaults, the `with` block, the registry."""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest

from drayman import DAG, Param, Shell, task
from drayman.authoring.context import Context
from drayman.authoring.dag import collect_dags, current_dag, reset_registry
from drayman.exceptions import DagDefinitionError, ScheduleError, TimezoneError
from drayman.spec import ParamSpec


def _shown_path() -> str:
    """How error messages show this file: relative to the working directory when below it."""
    path = os.path.relpath(__file__)
    return __file__ if path.startswith("..") else path


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    reset_registry()
    yield
    reset_registry()


def _line_below() -> int:
    """The line number just below the caller's line."""
    frame = inspect.currentframe()
    assert frame is not None and frame.f_back is not None
    return frame.f_back.f_lineno + 1


def make_ctx(**overrides: object) -> Context:
    moment = datetime(2026, 1, 2, 3, tzinfo=UTC)
    values: dict[str, object] = {
        "dag_id": "d",
        "run_id": "r",
        "task_id": "t",
        "map_index": -1,
        "try_number": 1,
        "max_tries": 1,
        "run_type": "manual",
        "logical_date": moment,
        "data_interval_start": moment,
        "data_interval_end": moment,
        "timezone": "UTC",
        "bundle_version": "v1",
    }
    values.update(overrides)
    return Context(**values)  # type: ignore[arg-type]


# ------------------------------------------------------------------------- good definitions


def test_defaults() -> None:
    dag = DAG("plain")
    assert dag.dag_id == "plain"
    assert dag.schedule is None
    assert dag.timezone == "UTC"
    assert dag.start_date is None and dag.end_date is None
    assert dag.catchup is False
    assert (dag.max_active_runs, dag.max_active_tasks) == (16, 16)
    assert dag.params == {} and dag.tags == () and dag.description == ""
    assert dag.task_defaults == {}


@pytest.mark.parametrize(
    "value",
    [
        "2026-01-01",
        "2026-01-01T00:00:00",
        date(2026, 1, 1),
        datetime(2026, 1, 1),
        datetime(2026, 1, 1, 8, tzinfo=UTC),  # the same instant, given in UTC
        "2026-01-01T08:00:00+00:00",
    ],
)
def test_start_date_forms_become_aware_in_the_dag_timezone(value: object) -> None:
    dag = DAG("d", timezone="America/Los_Angeles", start_date=value)  # type: ignore[arg-type]
    assert dag.start_date is not None
    assert dag.start_date.isoformat() == "2026-01-01T00:00:00-08:00"


def test_end_date_before_start_date_is_refused() -> None:
    with pytest.raises(DagDefinitionError, match="end_date 2025-01-01T00:00:00\\+00:00 is before"):
        DAG("d", start_date="2026-01-01", end_date="2025-01-01")


def test_task_defaults_from_keywords_and_default_args() -> None:
    def on_retry(ctx: Context) -> None: ...

    dag = DAG(
        "d",
        default_args={"retries": 1, "queue": "etl", "on_success": print},
        retries=3,
        retry_delay=timedelta(seconds=30),
        on_retry=on_retry,
    )
    assert dag.task_defaults == {
        "retries": 3,  # the DAG's own keyword wins over default_args
        "queue": "etl",
        "on_success": (print,),
        "retry_delay_s": 30.0,
        "on_retry": (on_retry,),
    }
    shell = Shell("s", "true", dag=dag, queue="fast")
    assert shell.options.retries == 3
    assert shell.options.queue == "fast"
    assert shell.options.on_success == (print,)


def test_dag_level_callbacks_are_not_task_defaults() -> None:
    def notify(ctx: Context) -> None: ...

    dag = DAG("d", on_success=notify, on_failure=[notify, notify])
    assert dag.on_success == (notify,)
    assert dag.on_failure == (notify, notify)
    assert dag.task_defaults == {}


def test_params_plain_and_param() -> None:
    dag = DAG("d", params={"out": "/tmp/x", "limit": Param(10, type="integer"), "ids": (1, 2)})
    assert dag.params == {
        "out": ParamSpec(default="/tmp/x"),
        "limit": ParamSpec(default=10, type="integer"),
        "ids": ParamSpec(default=[1, 2]),  # as it will read back from JSON
    }


def test_interval_schedule_is_kept() -> None:
    assert DAG("d", schedule=timedelta(hours=1)).schedule == timedelta(hours=1)


# ----------------------------------------------------------------------------------- errors


def test_unknown_timezone_names_file_line_and_suggests() -> None:
    line = _line_below()
    with pytest.raises(TimezoneError) as caught:
        DAG("sales_daily", timezone="America/Los_Angelos")
    assert str(caught.value) == (
        f"{_shown_path()}:{line + 1}: DAG 'sales_daily': unknown timezone 'America/Los_Angelos' "
        "(did you mean 'America/Los_Angeles'?)"
    )


def test_bad_schedule_keeps_its_type_and_gains_the_location() -> None:
    with pytest.raises(ScheduleError, match=r"test_authoring_dag\.py:\d+: DAG 'd': bad schedule"):
        DAG("d", schedule="0 3 * *")


def test_unknown_keyword_is_named_with_the_location() -> None:
    line = _line_below()
    with pytest.raises(DagDefinitionError) as caught:
        DAG("d", retires=3)  # type: ignore[call-arg]
    message = str(caught.value)
    assert message.startswith(f"{_shown_path()}:{line + 1}: DAG 'd': unknown keyword 'retires'")
    assert "(did you mean 'retries'?)" in message


def test_misspelt_dag_keyword_is_suggested() -> None:
    with pytest.raises(DagDefinitionError, match="'scheudle' \\(did you mean 'schedule'\\?\\)"):
        DAG("d", scheudle="@daily")  # type: ignore[call-arg]


def test_unknown_default_args_key() -> None:
    with pytest.raises(DagDefinitionError, match="DAG 'd': default_args: unknown keyword 'owner'"):
        DAG("d", default_args={"owner": "me"})


@pytest.mark.parametrize("dag_id", ["", "has space", "slash/no", "é", "x" * 251, 42])
def test_bad_dag_ids(dag_id: object) -> None:
    with pytest.raises(DagDefinitionError, match=r"invalid DAG id .*: use 1 to 250 letters"):
        DAG(dag_id)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"trigger_rule": "all_sucess"}, "trigger_rule must be one of all_done, all_failed"),
        ({"retries": -1}, "retries must be an integer >= 0, got -1"),
        ({"retries": True}, "retries must be an integer >= 0, got True"),
        ({"retry_delay": "30s"}, "retry_delay must be a timedelta or a number of seconds"),
        ({"execution_timeout": 0}, "execution_timeout must be > 0 seconds"),
        ({"pool_slots": 0}, "pool_slots must be an integer >= 1"),
        ({"queue": ""}, "queue must be a non-empty string"),
        ({"on_retry": "notify"}, "on_retry must be a callable or a list of callables"),
        ({"start_date": "2026-13-01"}, "start_date '2026-13-01' is not an ISO date or datetime"),
        ({"start_date": 20260101}, "start_date must be a date, a datetime or an ISO string"),
        ({"tags": "sales"}, "tags must be a list of strings, e.g. tags=\\['sales'\\]"),
        ({"max_active_runs": 0}, "max_active_runs must be an integer >= 1"),
        ({"catchup": "yes"}, "catchup must be True or False"),
        ({"on_failure": 3}, "on_failure must be a callable or a list of callables"),
        ({"params": {"n": Param("ten", type="integer")}}, "param 'n': default: expected integer"),
        ({"params": {"n": Param(1, type="int")}}, "param 'n': unknown type 'int' \\(valid: str"),
        ({"params": {"n": object()}}, "param 'n': default <object .* is not JSON data"),
        ({"schedule": 3600}, "schedule must be a cron string, a preset"),
    ],
)
def test_bad_values(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(
        DagDefinitionError, match=r"test_authoring_dag\.py:\d+: DAG 'd': " + message
    ):
        DAG("d", **kwargs)  # type: ignore[arg-type]


def test_a_failed_dag_is_not_registered() -> None:
    with pytest.raises(DagDefinitionError):
        DAG("d", retries=-1)
    assert collect_dags() == []


# ------------------------------------------------------------------- the block and registry


def test_tasks_attach_to_the_innermost_block() -> None:
    with DAG("outer") as outer:
        a = Shell("a", "true")
        with DAG("inner") as inner:
            b = Shell("b", "true")
            assert current_dag() is inner
        c = Shell("c", "true")
    assert current_dag() is None
    assert list(outer.tasks) == ["a", "c"]
    assert list(inner.tasks) == ["b"]
    assert (a.dag, b.dag, c.dag) == (outer, inner, outer)


def test_block_is_left_on_error() -> None:
    with pytest.raises(RuntimeError), DAG("d"):
        raise RuntimeError("boom")
    assert current_dag() is None


def test_dag_keyword_attaches_without_a_block() -> None:
    dag = DAG("d")

    @task(dag=dag)
    def f() -> int:
        return 1

    ref = f()
    shell = Shell("s", "true", dag=dag)
    assert dag.get_task("f") is ref.task
    assert dag.get_task("s") is shell


def test_get_task_of_unknown_id() -> None:
    with pytest.raises(DagDefinitionError, match="DAG 'd' has no task 'nope'"):
        DAG("d").get_task("nope")


def test_collect_dags_in_order_and_reset() -> None:
    first, second = DAG("a"), DAG("b")
    assert collect_dags() == [first, second]
    reset_registry()
    assert collect_dags() == []


def test_duplicate_dag_ids_in_one_file() -> None:
    DAG("same")
    line = _line_below()
    DAG("same")
    with pytest.raises(DagDefinitionError) as caught:
        collect_dags()
    assert str(caught.value) == (
        f"{_shown_path()}:{line}: DAG id 'same' is already used by the DAG at "
        f"{_shown_path()}:{line - 2}"
    )


# ---------------------------------------------------------------------------- DAG callbacks


def test_dag_callbacks_with_one_and_two_parameters() -> None:
    calls: list[tuple[object, ...]] = []

    def one(ctx: Context) -> None:
        calls.append(("one", ctx.run_id))

    def two(ctx: Context, reason: str | None) -> None:
        calls.append(("two", ctx.run_id, reason))

    dag = DAG("d", on_failure=[one, two], on_success=one)
    dag.run_callback("on_failure", make_ctx(), "task load failed")
    dag.run_callback("on_success", make_ctx(run_id="r2"), None)
    assert calls == [("one", "r"), ("two", "r", "task load failed"), ("one", "r2")]


def test_dag_callback_unset_is_a_no_op_and_unknown_name_is_refused() -> None:
    dag = DAG("d")
    dag.run_callback("on_success", make_ctx(), None)
    with pytest.raises(ValueError, match="unknown DAG callback 'on_retry'"):
        dag.run_callback("on_retry", make_ctx(), None)


def test_every_callback_runs_even_when_one_fails() -> None:
    ran: list[str] = []

    def broken(ctx: Context) -> None:
        ran.append("broken")
        raise RuntimeError("smtp down")

    def fine(ctx: Context) -> None:
        ran.append("fine")

    dag = DAG("d", on_failure=[broken, fine])
    with pytest.raises(RuntimeError, match="smtp down"):
        dag.run_callback("on_failure", make_ctx(), "x")
    assert ran == ["broken", "fine"]
