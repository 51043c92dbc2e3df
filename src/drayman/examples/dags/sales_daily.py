"""Daily sales ETL: generate a day of point-of-sale CSV, clean and aggregate it, load it
into a SQLite warehouse. Runs at 03:00 Los Angeles time for the previous day's data."""

from __future__ import annotations

import csv
import random
import sqlite3
from datetime import timedelta

from etl.storage import data_dir, warehouse_path

from drayman import DAG, Shell, task

STORES = ["sf-01", "sf-02", "la-01", "sea-01"]
PRODUCTS = {"coffee": 3.5, "bagel": 2.25, "juice": 4.0, "muffin": 2.75}

with DAG(
    "sales_daily",
    schedule="0 3 * * *",
    timezone="America/Los_Angeles",
    start_date="2026-01-01",
    catchup=False,
    retries=2,
    retry_delay=timedelta(seconds=5),
    retry_backoff=True,
    params={"rows": 500},
    tags=["example", "sales"],
    description="Point-of-sale CSV -> cleaned daily totals -> SQLite warehouse",
):

    @task
    def extract(ctx) -> str:
        """Write the day's raw sales as CSV (a stand-in for an export from the shops)."""
        rng = random.Random(ctx.ds)
        path = data_dir("raw", ctx.ds) / "sales.csv"
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["store", "product", "quantity", "unit_price"])
            for _ in range(int(ctx.params["rows"])):
                product = rng.choice(list(PRODUCTS))
                quantity = rng.choice([1, 1, 2, 3, -1])  # -1: a refund line to clean out
                writer.writerow([rng.choice(STORES), product, quantity, PRODUCTS[product]])
        print(f"wrote {path}")
        return str(path)

    @task(execution_timeout=timedelta(minutes=5))
    def transform(raw_path: str) -> dict:
        """Drop refunds and aggregate revenue per store."""
        totals: dict[str, float] = {}
        kept = 0
        with open(raw_path, newline="") as handle:
            for row in csv.DictReader(handle):
                quantity = int(row["quantity"])
                if quantity <= 0:
                    continue
                kept += 1
                revenue = quantity * float(row["unit_price"])
                totals[row["store"]] = totals.get(row["store"], 0.0) + revenue
        print(f"kept {kept} lines for {len(totals)} stores")
        return {"rows": kept, "revenue": {k: round(v, 2) for k, v in sorted(totals.items())}}

    @task
    def load(stats: dict, ctx) -> int:
        """Upsert the day's totals into the warehouse table daily_revenue."""
        with sqlite3.connect(warehouse_path()) as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS daily_revenue "
                "(day TEXT, store TEXT, revenue REAL, PRIMARY KEY (day, store))"
            )
            db.executemany(
                "INSERT OR REPLACE INTO daily_revenue VALUES (?, ?, ?)",
                [(ctx.ds, store, value) for store, value in stats["revenue"].items()],
            )
        print(f"loaded {len(stats['revenue'])} rows for {ctx.ds}")
        return len(stats["revenue"])

    report = Shell(
        "report",
        'echo "warehouse updated for {{ ds }} (run {{ run_id }})" && '
        'ls -l "$DRAYMAN_HOME/example_data/raw/{{ ds }}"',
    )

    load(transform(extract())) >> report
