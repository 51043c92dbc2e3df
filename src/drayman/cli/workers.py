"""`drayman workers list`: the worker components, their queues, load and liveness."""

from __future__ import annotations

import json

import click

from drayman.cli.common import iso, json_option, load_settings, open_store, print_json, print_table


@click.group("workers")
def workers() -> None:
    """List the workers (local executors and Celery workers)."""


@workers.command("list")
@json_option
@click.option("--running-only", is_flag=True, help="Leave out stopped workers.")
def list_workers(as_json: bool, running_only: bool) -> None:
    """Every worker: host, pid, queues, concurrency, running tries, last heartbeat."""
    from drayman.store import components

    store = open_store(load_settings())
    try:
        with store.read() as conn:
            now = store.db_now(conn)
            rows = components.workers(conn, include_stopped=not running_only)
    finally:
        store.dispose()
    items = [
        {
            "id": row.id,
            "hostname": row.hostname,
            "pid": row.pid,
            "executor": row.executor,
            "queues": json.loads(row.queues or "[]"),
            "concurrency": row.concurrency,
            "running": int(row.running or 0),
            "heartbeat_age_s": round((now - row.heartbeat_at).total_seconds(), 1),
            "heartbeat_at": iso(row.heartbeat_at),
            "started_at": iso(row.started_at),
            "stopped_at": iso(row.stopped_at),
            "state": row.state,
        }
        for row in rows
    ]
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
