"""The DAG: its schedule, limits, params and defaults, and the tasks created in its block.

The DAG processor calls `reset_registry()`, imports one DAG file, then `collect_dags()`: every
DAG built during that import, in order. The registry and the stack of open `with DAG(...)`
blocks are module-level on purpose: a DAG file is plain Python that calls `DAG(...)` and
`@task` functions, so there is nothing to pass them through.

Every check runs when the DAG is built, and an error names the DAG file and the line of the
`DAG(...)` call: "dags/sales.py:12: DAG 'sales_daily': unknown timezone 'America/Los_Angelos'
(did you mean 'America/Los_Angeles'?)".
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Unpack

from drayman.authoring.callbacks import Callback, CallbackArg, invoke_callbacks
from drayman.authoring.context import Context
from drayman.authoring.locations import caller_location, check_id
from drayman.authoring.options import TaskDefaultArgs, check_callbacks, normalize_options
from drayman.authoring.params import param_spec
from drayman.authoring.tasks import Task
from drayman.exceptions import DagDefinitionError, ScheduleError, TimezoneError
from drayman.spec import DagSpec, ParamSpec

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

DateLike = str | date | datetime

_registry: list[DAG] = []  # DAGs built since the last reset_registry()
_active: list[DAG] = []  # open `with DAG(...)` blocks, innermost last

# The DAG's own keywords, only to suggest a spelling when an unknown one reaches **task_defaults.
_DAG_KEYWORDS = (
    "schedule",
    "timezone",
    "start_date",
    "end_date",
    "catchup",
    "max_active_runs",
    "max_active_tasks",
    "params",
    "tags",
    "description",
    "on_success",
    "on_failure",
    "default_args",
)


class DAG:
    """A workflow: tasks, their dependencies, and when and how often it runs.

    Use it as `with DAG("sales_daily", schedule="0 3 * * *", ...):` and create tasks in the
    block, or pass `dag=` to each task. `schedule` is a cron string, a preset ("@daily"), a
    timedelta, or None (triggered by hand). Naive `start_date` / `end_date` values (a date
    string such as "2026-01-01", an ISO datetime, a date or a datetime) are read in `timezone`.
    Without `timezone`, an aware `start_date` gives its own (a named zone; a fixed offset is
    refused), else it is UTC.
    `on_success` / `on_failure` are called when a run ends. Task options given as keywords
    (retries=3, ...) or in `default_args` apply to every task; a task's own options win.
    """

    def __init__(
        self,
        dag_id: str,
        *,
        schedule: str | timedelta | None = None,
        timezone: str | None = None,
        start_date: DateLike | None = None,
        end_date: DateLike | None = None,
        catchup: bool = False,
        max_active_runs: int = 16,
        max_active_tasks: int = 16,
        params: Mapping[str, Any] | None = None,
        tags: Iterable[str] = (),
        description: str = "",
        on_success: CallbackArg | None = None,
        on_failure: CallbackArg | None = None,
        default_args: Mapping[str, Any] | None = None,
        **task_defaults: Unpack[TaskDefaultArgs],
    ) -> None:
        self.where = caller_location()
        self.dag_id = check_id("DAG", dag_id, self.where)
        owner = f"{self.where}: DAG {dag_id!r}"
        with _reported_at(owner):
            start, end = _datetime("start_date", start_date), _datetime("end_date", end_date)
            tz = _validate_timezone(_timezone(timezone, start))
            self.timezone: str = tz.key
            self.schedule = _validate_schedule(schedule, self.timezone)
            self.start_date = _aware(start, tz)
            self.end_date = _aware(end, tz)
            _check_order(self.start_date, self.end_date)
            self.catchup = _flag("catchup", catchup)
            self.max_active_runs = _positive("max_active_runs", max_active_runs)
            self.max_active_tasks = _positive("max_active_tasks", max_active_tasks)
            self.params: dict[str, ParamSpec] = _params(params)
            self.tags = _tags(tags)
            self.description = _text("description", description)
            self.on_success = _callbacks("on_success", on_success)
            self.on_failure = _callbacks("on_failure", on_failure)
        self.task_defaults = _task_defaults(owner, default_args, task_defaults)
        self.tasks: dict[str, Task] = {}
        _registry.append(self)

    def __repr__(self) -> str:
        return f"<DAG {self.dag_id!r}>"

    def __enter__(self) -> DAG:
        _active.append(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # `with` blocks nest, so this DAG is the innermost one; remove() covers odd exits.
        if _active and _active[-1] is self:
            _active.pop()
        elif self in _active:
            _active.remove(self)

    def add_task(self, task: Task) -> None:
        """Attach `task` (done by the task itself when it is created)."""
        existing = self.tasks.get(task.task_id)
        if existing is not None:
            raise DagDefinitionError(
                f"{task.where}: DAG {self.dag_id!r} already has a task {task.task_id!r} "
                f"(defined at {existing.where})"
            )
        self.tasks[task.task_id] = task

    def unique_task_id(self, base: str) -> str:
        """`base`, or `base__1`, `base__2`, ... whichever is free first."""
        task_id, number = base, 0
        while task_id in self.tasks:
            number += 1
            task_id = f"{base}__{number}"
        return task_id

    def get_task(self, task_id: str) -> Task:
        """The task `task_id`; DagDefinitionError if this DAG has none by that id."""
        try:
            return self.tasks[task_id]
        except KeyError:
            raise DagDefinitionError(
                f"{self.where}: DAG {self.dag_id!r} has no task {task_id!r}"
            ) from None

    def to_spec(self, fileloc: str) -> DagSpec:
        """The serialized DAG; `fileloc` is the file's path relative to the bundle root."""
        from drayman.authoring.serialize import serialize_dag

        return serialize_dag(self, fileloc)

    def run_callback(self, name: str, ctx: Context, reason: str | None) -> None:
        """Run the DAG's `name` callbacks ("on_success" or "on_failure") for a finished run."""
        if name not in ("on_success", "on_failure"):
            raise ValueError(f"unknown DAG callback {name!r}: use 'on_success' or 'on_failure'")
        invoke_callbacks(getattr(self, name), ctx, reason)


def current_dag() -> DAG | None:
    """The DAG of the innermost open `with DAG(...)` block, if any."""
    return _active[-1] if _active else None


def reset_registry() -> None:
    """Forget every DAG built so far (the DAG processor calls it before importing a file)."""
    _registry.clear()
    _active.clear()


def collect_dags() -> list[DAG]:
    """Every DAG built since `reset_registry()`, in order; a dag id used twice is an error."""
    seen: dict[str, DAG] = {}
    for dag in _registry:
        first = seen.setdefault(dag.dag_id, dag)
        if first is not dag:
            raise DagDefinitionError(
                f"{dag.where}: DAG id {dag.dag_id!r} is already used by the DAG at {first.where}"
            )
    return list(_registry)


# ------------------------------------------------------------------------------ checks


@contextmanager
def _reported_at(owner: str) -> Iterator[None]:
    """Prefix errors of the checks below with the DAG's file, line and id."""
    try:
        yield
    except (ScheduleError, TimezoneError) as exc:
        raise type(exc)(f"{owner}: {exc}") from None
    except ValueError as exc:
        raise DagDefinitionError(f"{owner}: {exc}") from None


def _validate_timezone(name: object) -> ZoneInfo:
    from drayman.timetables import load_timezone  # only when a DAG is built

    if not isinstance(name, str):
        raise ValueError(f"timezone must be an IANA name such as 'Europe/Berlin', got {name!r}")
    return load_timezone(name)


def _validate_schedule(schedule: object, timezone: str) -> str | timedelta | None:
    from drayman.timetables import parse_schedule  # only when a DAG is built

    if schedule is not None and not isinstance(schedule, str | timedelta):
        raise ValueError(
            "schedule must be a cron string, a preset such as '@daily', a timedelta or None; "
            f"got {schedule!r}"
        )
    parse_schedule(schedule, timezone)
    return schedule


def _timezone(name: object, start: datetime | None) -> object:
    """`name`; without one, the zone of an aware start_date (as in Airflow), else UTC."""
    if name is not None:
        return name
    if start is None or start.tzinfo is None:
        return "UTC"
    from drayman.timetables import zone_name_of  # only when a DAG is built

    return zone_name_of(start, "start_date")


def _datetime(name: str, value: object) -> datetime | None:
    """`value` as a datetime (naive or aware, as given): a date is its midnight."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"{name} {value!r} is not an ISO date or datetime, e.g. '2026-01-01'"
            ) from None
    elif isinstance(value, date) and not isinstance(value, datetime):
        value = datetime.combine(value, time())
    if not isinstance(value, datetime):
        raise ValueError(f"{name} must be a date, a datetime or an ISO string, got {value!r}")
    return value


def _aware(value: datetime | None, tz: ZoneInfo) -> datetime | None:
    """`value` in `tz`; a naive value is wall time in `tz`."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=tz)
    return value.astimezone(tz)


def _check_order(start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and end < start:
        raise ValueError(f"end_date {end.isoformat()} is before start_date {start.isoformat()}")


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def _text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {value!r}")
    return value


def _params(params: object) -> dict[str, ParamSpec]:
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise ValueError(f"params must be a dict of name -> default or Param, got {params!r}")
    return {name: param_spec(name, value) for name, value in params.items()}


def _tags(tags: object) -> tuple[str, ...]:
    # A bare string is iterable too; "sales" must not become ("s", "a", "l", "e", "s").
    if isinstance(tags, str) or not isinstance(tags, Iterable):
        raise ValueError(f"tags must be a list of strings, e.g. tags=['sales'], got {tags!r}")
    result = tuple(tags)
    for tag in result:
        if not isinstance(tag, str) or not tag:
            raise ValueError(f"tags must be non-empty strings, got {tag!r}")
    return result


def _callbacks(name: str, value: object) -> tuple[Callback, ...]:
    try:
        return check_callbacks(value)
    except ValueError as exc:
        raise ValueError(f"{name} {exc}") from None


def _task_defaults(
    owner: str, default_args: Mapping[str, Any] | None, task_defaults: Mapping[str, object]
) -> dict[str, Any]:
    """Options for every task: `default_args` first, then the DAG's own keywords on top."""
    if default_args is not None and not isinstance(default_args, Mapping):
        raise DagDefinitionError(f"{owner}: default_args must be a dict, got {default_args!r}")
    return {
        **normalize_options(default_args or {}, f"{owner}: default_args"),
        **normalize_options(task_defaults, owner, also_valid=_DAG_KEYWORDS),
    }
