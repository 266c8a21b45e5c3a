"""A stand-in for the serving publisher (issue 12) in tests: a warehouse built by the real graph,
then copied table by table into the snapshot file the BI layer reads.

Swap `publish_test_snapshot` for the real publisher once `marketflow_assets.serving` exists; the
file layout (`$MARKETFLOW_HOME/serving/current.duckdb`, tables under the warehouse's own names)
is the serving contract, not something this helper invents.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import duckdb

from marketflow_assets import cadence
from marketflow_assets.bi.served import SERVED_TABLES, snapshot_path
from marketflow_assets.calendar import xnys
from marketflow_assets.settings import Settings
from marketflow_tests.helpers import FRIDAY_EVENING, make_settings, materialize

# Enough sessions for SMA 200 and both kinds of moving-average cross; a little provider dirt so
# the data-quality dashboard has rejected rows to show.
BI_TICKERS = "AAPL,MSFT,NVDA,KO,PEP,JPM,TSLA,^GSPC"
BI_SESSIONS = 300
BI_INTRADAY_SESSIONS = 2
BI_FAULTS = "duplicates=0.002,bad_ticks=0.002"


def build_bi_warehouse(home: Path) -> Settings:
    """Materialize the daily and reference path over BI_SESSIONS sessions and the intraday path
    over the last BI_INTRADAY_SESSIONS, as `make demo` does (simulator, fixed clock)."""
    settings = make_settings(home, tickers=BI_TICKERS, simulator_faults=BI_FAULTS)
    cal = xnys()
    last = cal.latest_closed_session(FRIDAY_EVENING)
    first = cal.offset(last, -(BI_SESSIONS - 1))
    daily = (cadence.daily_assets | cadence.reference_assets).upstream() - cadence.intraday_assets
    materialize(settings, select=daily, partition_range=(str(first), str(last)))
    intraday_first = cal.offset(last, -(BI_INTRADAY_SESSIONS - 1))
    materialize(
        settings,
        select=cadence.intraday_assets | dg.AssetSelection.keys("gold/hourly_bars"),
        partition_range=(str(intraday_first), str(last)),
    )
    return settings


def publish_test_snapshot(settings: Settings, target: Path | None = None) -> Path:
    """Copy every served table of the warehouse into a fresh DuckDB file and move it atomically
    into place at the snapshot path (what the real publisher promises readers)."""
    target = target or snapshot_path(settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    staging.unlink(missing_ok=True)
    con = duckdb.connect(str(staging))
    try:
        con.execute(f"ATTACH '{settings.warehouse}' AS wh (READ_ONLY)")
        for table in SERVED_TABLES:
            schema, _ = table.split(".")
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            con.execute(f"CREATE TABLE {table} AS SELECT * FROM wh.{table}")
        con.execute("DETACH wh")
    finally:
        con.close()
    staging.replace(target)
    return target
