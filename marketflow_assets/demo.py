"""`make demo`: build every layer for the latest 60 sessions from the offline simulator.

Runs the whole asset graph as one Dagster run in the instance under $DAGSTER_HOME (so it shows
up in the UI afterwards), then prints what it built and how to look at it.
"""

import datetime as dt
import os
import sys

import dagster as dg
import duckdb

from marketflow_assets.calendar import xnys
from marketflow_assets.definitions import build_definitions
from marketflow_assets.settings import Settings
from marketflow_assets.storage.object_store import LocalObjectStore
from marketflow_assets.storage.raw_lake import RawLake

DEMO_SESSIONS = 60
# A little dirt, so the rejected-rows table and the quality checks have something to show.
DEMO_FAULTS = "duplicates=0.002,bad_ticks=0.002"


def demo_settings() -> Settings:
    os.environ.setdefault("MARKETFLOW_SOURCE", "simulator")
    os.environ.setdefault("MARKETFLOW_SIMULATOR_FAULTS", DEMO_FAULTS)
    return Settings.from_env()


def demo_range(settings: Settings) -> tuple[dt.date, dt.date]:
    now = settings.simulator_now or dt.datetime.now(dt.UTC)
    cal = xnys()
    last = cal.latest_closed_session(now)
    first = max(cal.offset(last, -(DEMO_SESSIONS - 1)), settings.start_date)
    return first, last


def run(settings: Settings, first: dt.date, last: dt.date) -> dg.ExecuteInProcessResult:
    defs = build_definitions(settings)
    job = defs.resolve_implicit_global_asset_job_def()
    with dg.DagsterInstance.get() as instance:
        return job.execute_in_process(
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": first.isoformat(),
                "dagster/asset_partition_range_end": last.isoformat(),
                "marketflow/demo": "true",
            },
            raise_on_error=False,
        )


def summary(settings: Settings) -> str:
    lines = []
    if settings.s3_bucket is None:
        raw = RawLake(LocalObjectStore(settings.lake_root))
        landed = sum(
            o.rows for m in raw.manifests(settings.source, "daily_bars") for o in m.objects
        )
        lines.append(f"  {'raw daily_bars (rows landed)':<34}{landed:>12,}")
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        tables = con.execute(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables "
            "WHERE table_schema IN ('bronze', 'silver', 'gold', 'ops') ORDER BY 1"
        ).fetchall()
        for (name,) in tables:
            count = con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
            lines.append(f"  {name:<34}{count:>12,}")
        rejected = con.execute(
            "SELECT reason, count(*) FROM silver.rejected_bars GROUP BY 1 ORDER BY 2 DESC"
        ).fetchall()
    finally:
        con.close()
    lines.append("\nRejected rows (silver.rejected_bars) by reason:")
    lines += [f"  {reason:<34}{n:>12,}" for reason, n in rejected] or ["  none"]
    return "\n".join(lines)


def main() -> int:
    settings = demo_settings()
    first, last = demo_range(settings)
    print(
        f"MarketFlow demo: source={settings.source}, sessions {first}..{last}, home {settings.home}"
    )
    result = run(settings, first, last)
    status = "succeeded" if result.success else "FAILED (see the run in the UI)"
    print(f"\nRun {result.run_id} {status}.\n\nRows per table:")
    print(summary(settings))
    lake = (
        f"s3://{settings.s3_bucket}/{settings.s3_prefix}"
        if settings.s3_bucket
        else settings.lake_root.resolve()
    )
    print(
        f"\nLake:      {lake}\nWarehouse: {settings.warehouse.resolve()}\n"
        "\nOpen the UI with `make dev`, then http://127.0.0.1:3000 -> Assets (the demo run is in Runs)."
        "\nLoad any asset from Python:\n"
        "  from dagster import AssetKey\n"
        "  from marketflow_assets.definitions import defs\n"
        f'  defs.load_asset_value(AssetKey(["silver", "daily_bars"]), partition_key="{last}")'
    )
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
