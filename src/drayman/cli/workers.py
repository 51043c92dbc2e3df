"""`drayman workers list`: the worker components, their queues, load and liveness."""

from __future__ import annotations

import json
from typing import Any

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
    from datetime import timedelta

    from drayman.store import components
    from drayman.store import task_instances as ti_store

    settings = load_settings()
    store = open_store(settings)
    try:
        with store.read() as conn:
            cutoff = store.db_now(conn) - timedelta(seconds=settings.heartbeat_timeout_s)
            live = components.live(conn, "worker", cutoff)
            counts = ti_store.per_queue(conn)
    finally:
        store.dispose()
    items = [_queue_item(name, counts.get(name, {}), live) for name in _queue_names(counts, live)]
    if as_json:
        print_json(items)
        return
    print_table(
        ["queue", "waiting", "running", "workers", "note"],
        [[i["queue"], i["waiting"], i["running"], i["workers"], i["note"]] for i in items],
    )


def _serves(worker: Any, queue: str) -> bool:
    served = json.loads(worker.queues or "[]")
    return "*" in served or queue in served  # "*": a local executor runs every queue


def _queue_names(counts: dict[str, dict[str, int]], live: list[Any]) -> list[str]:
    named = {q for w in live for q in json.loads(w.queues or "[]") if q != "*"}
    return sorted(named | set(counts))


def _queue_item(name: str, counts: dict[str, int], live: list[Any]) -> dict[str, Any]:
    waiting = counts.get("scheduled", 0) + counts.get("queued", 0)
    serving = [w for w in live if _serves(w, name)]
    note = "no live worker serves this queue" if waiting and not serving else ""
    return {
        "queue": name,
        "waiting": waiting,
        "running": counts.get("running", 0),
        "workers": len(serving),
        "concurrency": sum(int(w.concurrency) for w in serving),
        "note": note,
    }
