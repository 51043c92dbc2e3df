"""Workers and queues as an operator sees them: one view for `drayman workers|queues list
--json` and for the web's API and pages, so the two never disagree."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from drayman.config import Settings
from drayman.store import components
from drayman.store import task_instances as ti_store
from drayman.store.engine import Store

# With remote workers, each queue may hold this many tries queued or running per slot of the
# live workers serving it: a worker finds its next try waiting in the broker as one ends.
IN_FLIGHT_PER_SLOT = 2


def queue_cap(served_concurrency: int, floor: int) -> int:
    """With remote workers, the most tries of one queue queued or running at once.

    Sized from the live workers that serve the queue, so adding a worker raises it with no
    setting to change; never below `floor` (celery_min_in_flight), so a queue nobody serves holds
    that many tries, visibly waiting.
    """
    return max(floor, IN_FLIGHT_PER_SLOT * served_concurrency)


def iso(value: datetime | None) -> str | None:
    """A stored (UTC) time as ISO 8601 with its offset; None stays None."""
    return None if value is None else value.astimezone(UTC).isoformat()


def workers(store: Store, *, include_stopped: bool = True) -> list[dict[str, Any]]:
    """Every worker: host, pid, queues, concurrency, running tries, heartbeat age (DB clock)."""
    with store.read() as conn:
        now = store.db_now(conn)
        rows = components.workers(conn, include_stopped=include_stopped)
    return [
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


def queues(store: Store, settings: Settings) -> list[dict[str, Any]]:
    """Every queue with waiting or running tasks, or served by a live worker.

    A queue with tasks waiting and no live worker serving it says so in `note`: a task routed
    to a queue nobody serves waits visibly instead of silently never running. With Celery,
    `cap` is the most tries of the queue the schedulers keep queued or running at once.
    """
    with store.read() as conn:
        cutoff = store.db_now(conn) - timedelta(seconds=settings.heartbeat_timeout_s)
        live = components.live(conn, "worker", cutoff)
        counts = ti_store.per_queue(conn)
    named = {q for w in live for q in json.loads(w.queues or "[]") if q != "*"}
    floor = settings.celery_min_in_flight if settings.executor == "celery" else None
    return [_queue(name, counts.get(name, {}), live, floor) for name in sorted(named | set(counts))]


def _queue(
    name: str, counts: dict[str, int], live: list[Any], cap_floor: int | None
) -> dict[str, Any]:
    waiting = counts.get("scheduled", 0) + counts.get("queued", 0)
    serving = [w for w in live if _serves(w, name)]
    concurrency = sum(int(w.concurrency) for w in serving)
    return {
        "queue": name,
        "waiting": waiting,
        "running": counts.get("running", 0),
        "workers": len(serving),
        "concurrency": concurrency,
        "cap": None if cap_floor is None else queue_cap(concurrency, cap_floor),
        "note": "no live worker serves this queue" if waiting and not serving else "",
    }


def _serves(worker: Any, queue: str) -> bool:
    served = json.loads(worker.queues or "[]")
    return "*" in served or queue in served  # "*": a local executor runs every queue
