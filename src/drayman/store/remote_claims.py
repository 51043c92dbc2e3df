"""A remote worker's claim of the tries a broker message names (ADR 4's fence, ADR 8).

Only a try that is QUEUED and current is claimed; its workload is rebuilt from the store
with the scheduler's own code. A redelivered, stale or forged message claims nothing. The
locking and fenced writes of a claim are `try_claims`; this module turns them into workloads.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from drayman.spec import DagSpec
from drayman.store import dispatch, try_claims
from drayman.store import tries as try_store
from drayman.store.caches import RunCache
from drayman.store.engine import Connection
from drayman.workloads import TryWorkload


@dataclass(frozen=True)
class Refused:
    """A try of a queue the claiming worker does not serve: left QUEUED."""

    try_id: int
    queue: str


@dataclass(frozen=True)
class Claimed:
    """What one claim took: the workloads to run, and the tries it failed instead because
    their workloads could not be built (recorded failed in the claim's transaction)."""

    workloads: tuple[TryWorkload, ...] = ()
    failed: tuple[try_store.Recorded, ...] = ()
    undispatchable: tuple[dispatch.Undispatchable, ...] = ()  # why each of `failed` failed
    # tries of a queue this worker does not serve: left QUEUED for a worker that does
    refused: tuple[Refused, ...] = ()


def claim_tries(
    conn: Connection,
    try_ids: Sequence[int],
    spec_of: Callable[[str, str], DagSpec],
    *,
    worker_id: int | None,
    now: datetime,
    hostname: str,
    pid: int,
    runs: RunCache | None = None,
    queues: Collection[str] | None = None,
) -> Claimed:
    """Claim the tries among `try_ids` that are QUEUED and current; their workloads.

    A try whose workload cannot be rebuilt fails here, alone, with the reason in its log
    (`dispatch.fail_undispatchable`): it is never left claimed with nothing running it.
    A try of a queue not in `queues` (None: any) is refused and left QUEUED: a message only
    names it in the wrong queue if it was forged or misrouted, and the scheduler's own
    message, or its resend after `queued_timeout_s`, reaches a worker of its queue.
    """
    tries = try_claims.lock_claimable(conn, try_ids)
    rows = None if runs is None else runs.rows(conn, [t.dag_run_id for t in tries])
    built = dispatch.try_workloads(conn, tries, spec_of, rows)
    taken: list[TryWorkload] = []
    refused: list[Refused] = []
    for workload in built.workloads:
        if queues is None or workload.queue in queues:
            taken.append(workload)
        else:
            refused.append(Refused(workload.try_id, workload.queue))
    count = try_claims.record_claimed(
        conn,
        [w.try_id for w in taken],
        started_at=now,
        hostname=hostname,
        pid=pid,
        worker_id=worker_id,
    )
    if count != len(taken):  # the rows are locked: only a bug of ours gets here
        raise RuntimeError(f"claimed {count} of {len(taken)} locked tries")
    failed = dispatch.fail_undispatchable(conn, built.failed, spec_of, hostname=hostname, now=now)
    return Claimed(tuple(taken), tuple(failed), tuple(built.failed), tuple(refused))
