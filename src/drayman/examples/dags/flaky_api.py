"""A source that fails now and then: the first try of `fetch` fails, the retry succeeds.

Shows retries with exponential backoff, a retry callback, and a task that cleans up with
trigger_rule="all_done" whatever happened upstream."""

from __future__ import annotations

from datetime import timedelta

from drayman import DAG, task


def note_retry(ctx, error) -> None:
    print(f"[callback] {ctx.task_id} try {ctx.try_number} failed ({error}); retrying")


with DAG(
    "flaky_api",
    schedule="*/30 * * * *",
    timezone="UTC",
    start_date="2026-01-01",
    catchup=False,
    tags=["example", "retries"],
):

    @task(
        retries=3,
        retry_delay=timedelta(seconds=1),
        retry_backoff=True,
        max_retry_delay=timedelta(seconds=10),
        on_retry=note_retry,
    )
    def fetch(ctx) -> dict:
        if ctx.try_number == 1:
            raise ConnectionError("upstream API answered 503 Service Unavailable")
        print(f"try {ctx.try_number}: got 42 records")
        return {"records": 42}

    @task
    def store(payload: dict) -> int:
        print(f"stored {payload['records']} records")
        return int(payload["records"])

    @task(trigger_rule="all_done")
    def cleanup() -> None:
        print("temporary files removed")

    stored = store(fetch())
    stored >> cleanup()
