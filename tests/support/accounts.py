"""The throwaway unprivileged user that tries run as in the `run_as_user` tests."""

from __future__ import annotations

TASK_USER = "drayman-task-test"
