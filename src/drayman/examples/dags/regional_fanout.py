"""Fan-out over regions: one mapped try per region found at run time, then a summary.

The list of regions is computed by a task, so the number of parallel tries follows the
data: add a region and the next run has one more try, each with its own state and log."""

from __future__ import annotations

from datetime import timedelta

from drayman import DAG, task

with DAG(
    "regional_fanout",
    schedule="@hourly",
    timezone="Europe/Berlin",
    start_date="2026-01-01",
    catchup=False,
    max_active_runs=1,
    tags=["example", "fan-out"],
    retries=1,
    retry_delay=timedelta(seconds=2),
):

    @task
    def list_regions(ctx) -> list[str]:
        regions = ["eu-west", "eu-central", "us-east", "us-west", "ap-south"]
        print(f"{ctx.logical_date:%Y-%m-%d %H:%M %Z}: {len(regions)} regions")
        return regions

    @task
    def process(region: str) -> dict:
        """Pretend to pull and clean one region's orders."""
        orders = sum(ord(c) for c in region) % 97
        print(f"{region}: {orders} orders")
        return {"region": region, "orders": orders}

    @task
    def summarize(results: list) -> int:
        total = sum(item["orders"] for item in results)
        for item in results:
            print(f"{item['region']:>12}: {item['orders']}")
        print(f"{'total':>12}: {total}")
        return total

    summarize(process.expand(region=list_regions()))
