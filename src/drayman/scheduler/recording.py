"""Recording what the scheduler's own executor reported: tries started and tries ended.

Outcomes go through the fence (ADR 4): one for a try that is no longer current (a person
ended it, or it was declared lost) is refused, and said so in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from drayman.states import TIState
from drayman.store import tries as try_store
from drayman.store.engine import Connection
from drayman.workloads import TryOutcome, TryStarted

log = logging.getLogger("drayman.scheduler")


def record_events(
    conn: Connection,
    events: Sequence[TryStarted | TryOutcome],
    *,
    retry_delay: Callable[[try_store.RetrySubject], float],
) -> list[try_store.Recorded]:
    """Record starts and outcomes in one batch each; the outcomes taken."""
    outcomes = [e for e in events if isinstance(e, TryOutcome)]
    ended = {o.try_id for o in outcomes}
    # a start whose outcome arrived in the same batch is already in the outcome
    starts = [e for e in events if isinstance(e, TryStarted) and e.try_id not in ended]
    try_store.record_started_many(conn, starts)
    delays = retry_delays(conn, outcomes, retry_delay)
    recorded = try_store.record_outcomes(conn, outcomes, retry_delays=delays)
    if len(recorded) < len(outcomes):
        taken = {r.try_id for r in recorded}
        for outcome in outcomes:
            if outcome.try_id not in taken:
                log.warning(
                    "try.fenced try_id=%s: outcome refused, try is no longer current",
                    outcome.try_id,
                )
    for item in recorded:
        if item.state == TIState.UP_FOR_RETRY:
            log.info(
                "task.retry_scheduled ti=%s try=%s/%s", item.ti_id, item.try_number, item.max_tries
            )
    return recorded


def retry_delays(
    conn: Connection,
    outcomes: Sequence[TryOutcome],
    retry_delay: Callable[[try_store.RetrySubject], float],
) -> dict[int, float]:
    """The wait before the next try of each failed try that has one left, for the store to
    apply (it takes values, never a callback: ADR 16)."""
    return {s.try_id: retry_delay(s) for s in try_store.retry_subjects(conn, outcomes)}
