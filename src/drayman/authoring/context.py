"""The context one try of a task receives: who it is, which run, which data interval.

Every datetime is timezone-aware, in the DAG's timezone; `ds` and `ts` follow Airflow's
meaning (logical date as YYYY-MM-DD, and as ISO 8601), so templates port over unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Context:
    """Passed to a Python task that declares a `ctx` parameter, and to Jinja templates."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    try_number: int
    max_tries: int
    run_type: str
    logical_date: datetime
    data_interval_start: datetime
    data_interval_end: datetime
    timezone: str
    bundle_version: str
    params: dict[str, Any] = field(default_factory=dict)
    conf: dict[str, Any] = field(default_factory=dict)

    @property
    def ds(self) -> str:
        """The logical date as YYYY-MM-DD, in the DAG's timezone."""
        return self.logical_date.strftime("%Y-%m-%d")

    @property
    def ds_nodash(self) -> str:
        return self.logical_date.strftime("%Y%m%d")

    @property
    def ts(self) -> str:
        """The logical date as ISO 8601 with its offset."""
        return self.logical_date.isoformat()

    @property
    def log(self) -> logging.Logger:
        """A logger whose lines land in this try's log."""
        return logging.getLogger(f"drayman.task.{self.dag_id}.{self.task_id}")

    def template_vars(self) -> dict[str, Any]:
        """The names a Jinja template of this task can use."""
        return {
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "task_id": self.task_id,
            "map_index": self.map_index,
            "try_number": self.try_number,
            "max_tries": self.max_tries,
            "run_type": self.run_type,
            "logical_date": self.logical_date,
            "data_interval_start": self.data_interval_start,
            "data_interval_end": self.data_interval_end,
            "ds": self.ds,
            "ds_nodash": self.ds_nodash,
            "ts": self.ts,
            "params": self.params,
            "conf": self.conf,
            "bundle_version": self.bundle_version,
            "ctx": self,
        }


def parse_aware(text: str, timezone: str) -> datetime:
    """An ISO 8601 string as an aware datetime in `timezone`."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {text!r}: every stored time must carry its offset")
    return value.astimezone(ZoneInfo(timezone))
