"""Entry point: the command tree, loaded lazily, and one-line errors with meaningful codes.

Exit codes: 0 success; 1 the work failed (a test run failed, the scheduler crashed);
2 bad input (usage, conf, dates, schedules); 3 something named does not exist; 4 conflict.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

GROUPS = {
    "audit": ("drayman.cli.audit", "audit"),
    "config": ("drayman.cli.config_cmd", "config"),
    "db": ("drayman.cli.db", "db"),
    "dags": ("drayman.cli.dags", "dags"),
    "runs": ("drayman.cli.runs", "runs"),
    "tasks": ("drayman.cli.tasks", "tasks"),
    "pools": ("drayman.cli.pools", "pools"),
    "scheduler": ("drayman.cli.serve", "scheduler"),
    "standalone": ("drayman.cli.serve", "standalone"),
    "worker": ("drayman.cli.worker", "worker"),
    "workers": ("drayman.cli.workers", "workers"),
    "queues": ("drayman.cli.workers", "queues"),
    "users": ("drayman.cli.users", "users"),
    "tokens": ("drayman.cli.tokens", "tokens"),
    "web": ("drayman.cli.web", "web"),
}

HELP = {
    "audit": "Read the audit trail: logins, run actions, user and token changes.",
    "config": "Show the effective settings and where each came from.",
    "db": "Create or upgrade the metadata database.",
    "dags": "List, trigger, pause, test and backfill DAGs.",
    "runs": "List DAG runs and show every task and try of one.",
    "tasks": "Run one task for testing; read a try's log (--follow).",
    "pools": "List and set pools (slot budgets shared across DAGs).",
    "scheduler": "Run the scheduler (and the local executor) until stopped.",
    "standalone": "Run everything on one machine: SQLite, scheduler, local executor.",
    "worker": "Run a Celery worker that takes tries from the broker (executor 'celery').",
    "workers": "List the workers, their queues, running tries and heartbeats.",
    "queues": "List queues: waiting and running tasks, and the workers serving each.",
    "users": "Create, list, disable and delete users of the web UI and API; set roles.",
    "tokens": "Create, list and revoke API tokens for scripts and CI.",
    "web": "Serve the web UI and the REST API (/api/v1).",
}


class LazyGroup(click.Group):
    """Imports a command's module only when that command runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(GROUPS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in GROUPS:
            return None
        module_name, attr = GROUPS[name]
        if ctx.resilient_parsing and "--help" not in sys.argv:
            # shell completion and the top-level --help only need names and summaries
            return click.Command(name, help=HELP[name], short_help=HELP[name])
        command: click.Command = getattr(importlib.import_module(module_name), attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, HELP[name]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(None, "-V", "--version", package_name="drayman", prog_name="drayman")
def cli() -> None:
    """drayman: schedule and run ETL DAGs written in Python.

    Settings come from DRAYMAN_* environment variables and an optional drayman.toml
    (see `drayman config`). Start with `drayman standalone`.
    """


def main(argv: list[str] | None = None) -> Any:
    from drayman.cli.errors import run_with_clear_errors

    return run_with_clear_errors(cli, argv)
