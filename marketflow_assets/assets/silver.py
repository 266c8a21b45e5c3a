"""Silver layer: validated, deduplicated, session-aligned, corporate-action adjusted."""

import datetime as dt

import dagster as dg
import pandas as pd

from marketflow_assets import cadence
from marketflow_assets.calendar import xnys
from marketflow_assets.contracts import silver as contracts
from marketflow_assets.partitions import (
    INTRADAY_CHUNK_SESSIONS,
    sessions_of,
    sessions_partitions_def,
)
from marketflow_assets.resources import (
    WAREHOUSE_POOL,
    WAREHOUSE_RETRY_POLICY,
    MarketDataResource,
    UniverseResource,
    ticker_scope,
)
from marketflow_assets.storage.lake import LakeResource
from marketflow_assets.storage.raw_io_manager import FILE_DROP_SOURCE
from marketflow_assets.storage.warehouse import TableWrite
from marketflow_assets.transforms.adjustments import (
    corporate_actions_frame,
    silver_daily_bars_sql,
    silver_intraday_bars_sql,
)
from marketflow_assets.transforms.bar_quality import rejected_bars_sql


def scope_params(context: dg.AssetExecutionContext) -> dict:
    sessions = sessions_of(context)
    scope = ticker_scope(context)
    return {
        "start": sessions[0],
        "end": sessions[-1],
        "tickers": list(scope) if scope is not None else None,
    }


def session_hours(sessions: list[dt.date]) -> pd.DataFrame:
    return xnys().schedule(sessions[0], sessions[-1])


@dg.asset(
    key=["silver", "corporate_actions"],
    tags=cadence.DAILY,
    group_name="silver",
    kinds={"duckdb", "sql"},
    deps=[dg.AssetKey(["raw", "daily_bars"])],
    backfill_policy=dg.BackfillPolicy.single_run(),
    io_manager_key="warehouse_io_manager",
    pool=WAREHOUSE_POOL,
    retry_policy=WAREHOUSE_RETRY_POLICY,
    description=contracts.CORPORATE_ACTIONS.description,
    metadata=contracts.CORPORATE_ACTIONS.asset_metadata(),
)
def silver_corporate_actions(market_data: MarketDataResource, lake: LakeResource) -> TableWrite:
    raw = lake.raw()
    events = pd.DataFrame(
        [
            {**event, "fetched_at": m.fetched_at, "fetch_id": m.fetch_id, "source": m.source}
            for source in dict.fromkeys((market_data.source, FILE_DROP_SOURCE))
            for m in raw.manifests(source, "daily_bars")
            for event in m.events
        ],
        columns=[
            "ticker",
            "date",
            "dividend",
            "split_ratio",
            "prev_close",
            "fetched_at",
            "fetch_id",
            "source",
        ],
    )
    events["fetched_at"] = pd.to_datetime(events["fetched_at"], utc=True)
    actions = corporate_actions_frame(events)
    return TableWrite(
        rows=actions,
        metadata={
            "splits": dg.MetadataValue.int(int((actions["split_ratio"] != 1).sum())),
            "dividends": dg.MetadataValue.int(int((actions["dividend"] > 0).sum())),
        },
    )


@dg.asset(
    key=["silver", "daily_bars"],
    tags=cadence.DAILY,
    group_name="silver",
    kinds={"duckdb", "sql"},
    deps=[dg.AssetKey(["bronze", "daily_bars"]), silver_corporate_actions],
    partitions_def=sessions_partitions_def,
    backfill_policy=dg.BackfillPolicy.single_run(),
    io_manager_key="warehouse_io_manager",
    pool=WAREHOUSE_POOL,
    retry_policy=WAREHOUSE_RETRY_POLICY,
    description=contracts.DAILY_BARS.description,
    metadata=contracts.DAILY_BARS.asset_metadata(),
)
def silver_daily_bars(context: dg.AssetExecutionContext) -> TableWrite:
    return TableWrite(
        rows=silver_daily_bars_sql(), params=scope_params(context), tickers=ticker_scope(context)
    )


@dg.asset(
    key=["silver", "intraday_bars_1m"],
    tags=cadence.INTRADAY,
    group_name="silver",
    kinds={"duckdb", "sql"},
    deps=[dg.AssetKey(["bronze", "intraday_bars_1m"]), silver_corporate_actions],
    partitions_def=sessions_partitions_def,
    backfill_policy=dg.BackfillPolicy.single_run(),
    io_manager_key="warehouse_io_manager",
    pool=WAREHOUSE_POOL,
    retry_policy=WAREHOUSE_RETRY_POLICY,
    description=contracts.INTRADAY_BARS_1M.description,
    metadata=contracts.INTRADAY_BARS_1M.asset_metadata(),
)
def silver_intraday_bars_1m(context: dg.AssetExecutionContext) -> TableWrite:
    sessions = sessions_of(context)
    return TableWrite(
        rows=silver_intraday_bars_sql(),
        params=scope_params(context),
        tickers=ticker_scope(context),
        frames={"session_hours": session_hours(sessions)},
        # Every rule (hours, duplicates per bar, splits) looks at one session's bars at a time.
        chunk_sessions=INTRADAY_CHUNK_SESSIONS,
    )


@dg.asset(
    key=["silver", "rejected_bars"],
    tags=cadence.DAILY,
    group_name="silver",
    kinds={"duckdb", "sql"},
    deps=[dg.AssetKey(["bronze", "daily_bars"]), dg.AssetKey(["bronze", "intraday_bars_1m"])],
    partitions_def=sessions_partitions_def,
    backfill_policy=dg.BackfillPolicy.single_run(),
    io_manager_key="warehouse_io_manager",
    pool=WAREHOUSE_POOL,
    retry_policy=WAREHOUSE_RETRY_POLICY,
    description=contracts.REJECTED_BARS.description,
    metadata=contracts.REJECTED_BARS.asset_metadata(),
)
def silver_rejected_bars(context: dg.AssetExecutionContext) -> TableWrite:
    return TableWrite(
        rows=rejected_bars_sql(("1d", "1m")),
        params=scope_params(context),
        tickers=ticker_scope(context),
        frames={"session_hours": session_hours(sessions_of(context))},
    )


@dg.asset(
    key=["silver", "symbols"],
    tags=cadence.REFERENCE,
    group_name="silver",
    kinds={"duckdb", "sql"},
    deps=[dg.AssetKey(["bronze", "company_profiles"])],
    backfill_policy=dg.BackfillPolicy.single_run(),
    io_manager_key="warehouse_io_manager",
    pool=WAREHOUSE_POOL,
    retry_policy=WAREHOUSE_RETRY_POLICY,
    description=contracts.SYMBOLS.description,
    metadata=contracts.SYMBOLS.asset_metadata(),
)
def silver_symbols(universe: UniverseResource) -> TableWrite:
    return TableWrite(
        rows="""
SELECT ticker, name, exchange, currency, quote_type,
    CASE WHEN quote_type = 'EQUITY' THEN sector END AS sector,
    CASE WHEN quote_type = 'EQUITY' THEN industry END AS industry,
    list_contains($universe, ticker) AS in_universe,
    source,
    fetched_at AS updated_at
FROM bronze.company_profiles
""",
        params={"universe": universe.symbols()},
    )
