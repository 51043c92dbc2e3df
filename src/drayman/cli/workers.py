"""`drayman workers list`: the worker components, their queues, load and liveness."""

from __future__ import annotations

import click

from drayman import fleet
from drayman.cli.common import json_option, load_settings, open_store, print_json, print_table


@click.group("workers")
def workers() -> None:
    """List the workers (local executors and Celery workers)."""


@workers.command("list")
@json_option
@click.option("--running-only", is_flag=True, help="Leave out stopped workers.")
def list_workers(as_json: bool, running_only: bool) -> None:
    """Every worker: host, pid, queues, concurrency, running tries, last heartbeat."""

    store = open_store(load_settings())
    try:
        items = fleet.workers(store, include_stopped=not running_only)
    finally:
        store.dispose()
    if as_json:
        print_json(items)
        return
    print_table(
        ["id", "host", "pid", "executor", "queues", "concurrency", "running", "heartbeat", "state"],
        [
            [
                i["id"],
                i["hostname"],
                i["pid"],
                i["executor"],
                ",".join(i["queues"]),
                i["concurrency"],
                i["running"],
                f"{i['heartbeat_age_s']:g}s ago",
                i["state"],
            ]
            for i in items
        ],
    )


@click.group("queues")
def queues() -> None:
    """List queues: what waits and runs in each, and which workers serve it."""


@queues.command("list")
@json_option
def list_queues(as_json: bool) -> None:
    """Every queue with waiting or running tasks, or served by a live worker.

    A queue that has tasks waiting but no live worker serving it is flagged: a task routed
    to a queue nobody serves waits, and says so, instead of silently never running.
    """
    settings = load_settings()
    store = open_store(settings)
    try:
        items = fleet.queues(store, settings)
    finally:
        store.dispose()
    if as_json:
        print_json(items)
        return
    print_table(
        ["queue", "waiting", "running", "workers", "concurrency", "cap", "note"],
        [
            [
                i["queue"],
                i["waiting"],
                i["running"],
                i["workers"],
                i["concurrency"],
                "-" if i["cap"] is None else i["cap"],
                i["note"],
            ]
            for i in items
        ],
    )
