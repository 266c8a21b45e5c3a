"""Fundamentals: statements landed raw, typed in bronze, versioned facts in silver, point-in-time
ratios in gold (see `contracts/fundamentals.py` for the definitions and the known_at rules).

raw/financial_statements      one JSON document per ticker and fetch, as the provider served it
bronze/financial_statements   every number of every fetch, typed long rows
silver/financial_facts        bitemporal versions: known_at (rule per row), first_seen_at,
                              superseded_at; a changed value opens a version, none is overwritten
gold/fundamentals_daily       ratios per ticker and session from the facts known that day
"""

import datetime as dt
import json

import dagster as dg
import pandas as pd

from marketflow_assets import cadence
from marketflow_assets.assets.raw import PROVIDER_RETRY_POLICY, fail_fast, run_tickers
from marketflow_assets.assets.table_asset import table_asset
from marketflow_assets.calendar import EXCHANGE_TZ
from marketflow_assets.contracts import fundamentals as contracts
from marketflow_assets.contracts import silver
from marketflow_assets.ingestion.statement_drops import land_dropped_statements
from marketflow_assets.partitions import sessions_of
from marketflow_assets.resources import MarketDataResource, UniverseResource, ticker_scope
from marketflow_assets.resources.fundamentals import FundamentalsResource
from marketflow_assets.settings import Settings
from marketflow_assets.sources.fundamentals import DATASET
from marketflow_assets.storage.lake import LakeResource
from marketflow_assets.storage.raw_io_manager import FILE_DROP_SOURCE, Landing, RawLanding
from marketflow_assets.storage.raw_lake import FetchManifest, RawLake
from marketflow_assets.storage.warehouse import TableWrite
from marketflow_assets.transforms.fundamentals import (
    GOLD_FUNDAMENTALS_SQL,
    SILVER_FACTS_SQL,
    StatementFormatError,
    statement_rows,
)

# Gold is computed this many sessions at a time (same rows, bounded memory on long backfills).
GOLD_CHUNK_SESSIONS = 250


def fundamentals_resource(settings: Settings, market_data: MarketDataResource):
    return FundamentalsResource(
        source=settings.fundamentals_source or settings.source,
        edgar_user_agent=settings.edgar_user_agent,
        market_data=market_data,
    )


class StatementsFetchConfig(dg.Config):
    refresh: bool = False
    """Fetch every ticker's statements again."""
    max_age_days: int = 1
    """Tickers whose statements were fetched longer ago than this (provider clock) are fetched
    again: a daily fetch is what catches restatements and new releases."""
    file_batch: str | None = None
    """Land the dropped statement files of this batch (landing/claimed/<batch>/, set by the
    file_drops sensor) as source 'file' instead of asking the provider."""


@dg.asset(
    key=["raw", "financial_statements"],
    backfill_policy=dg.BackfillPolicy.single_run(),
    tags=cadence.REFERENCE,
    group_name="raw",
    kinds={"python", "json"},
    io_manager_key="raw_io_manager",
    retry_policy=PROVIDER_RETRY_POLICY,
    description=(
        "Financial statements (income, balance sheet, cash flow; annual and quarterly) and "
        "earnings-release or filing dates exactly as the provider served them: one immutable "
        "JSON object per fetch holding a document per ticker, plus a manifest. Fetches tickers "
        "with no fetch younger than `max_age_days`; one request per ticker."
    ),
)
def raw_financial_statements(
    context: dg.AssetExecutionContext,
    config: StatementsFetchConfig,
    fundamentals: FundamentalsResource,
    universe: UniverseResource,
    lake: LakeResource,
) -> RawLanding:
    with fail_fast():
        source = fundamentals.get_source()
        now = source.now()
        if config.file_batch:
            return land_dropped_statements(context, config.file_batch, now, lake)
        tickers = run_tickers(context, universe)
        fresh_after = now - dt.timedelta(days=config.max_age_days)
        fresh = {
            t
            for m in lake.raw().manifests(source.name, DATASET)
            if m.fetched_at > fresh_after
            for t in m.tickers  # a ticker without statements is not asked again either
        }
        wanted = tuple(t for t in tickers if config.refresh or t not in fresh)
        landings = []
        errors: dict[str, str] = {}
        skipped = source.unavailable()
        if skipped:
            context.log.warning(f"{source.name} serves no financial statements: {skipped}")
            wanted = ()
        if wanted:
            payload = fundamentals.fetch_statements(wanted)
            errors = payload.errors
            if not payload.records and errors:
                raise dg.Failure(
                    description=f"{source.name} returned statements for none of {len(wanted)} "
                    f"ticker(s): {_describe(errors)}",
                    allow_retries=False,
                )
            if errors:
                context.log.warning(
                    f"no statements for {len(errors)} ticker(s): {_describe(errors)}"
                )
            partition = now.astimezone(EXCHANGE_TZ).date().isoformat()
            landings.append(Landing(payload, partition=partition))
    return RawLanding(
        dataset=DATASET,
        landings=landings,
        metadata={
            "source": source.name,
            "provider_clock": now.isoformat(),
            "tickers_requested": len(tickers),
            "tickers_fetched": len(wanted),
            "source_unavailable": skipped or "",
            "tickers_without_statements": dg.MetadataValue.json(errors),
        },
    )


def _describe(errors: dict[str, str], limit: int = 10) -> str:
    shown = "; ".join(f"{t}: {e}" for t, e in list(errors.items())[:limit])
    return shown + (f"; ... ({len(errors) - limit} more)" if len(errors) > limit else "")


def statement_documents(raw: RawLake, manifests: list[FetchManifest]) -> pd.DataFrame:
    """One row per fetch and ticker: the document as JSON text, with lineage columns."""
    rows = [
        {
            "ticker": ticker,
            "record": json.dumps(record),
            "_source": m.source,
            "_fetch_id": m.fetch_id,
            "_fetched_at": m.fetched_at,
            "_object_key": obj.key,
        }
        for m in manifests
        for obj in m.objects
        for ticker, record in raw.read_records(obj).items()
    ]
    return pd.DataFrame(
        rows, columns=["ticker", "record", "_source", "_fetch_id", "_fetched_at", "_object_key"]
    )


@table_asset(
    contracts.BRONZE_FINANCIAL_STATEMENTS,
    cadence=cadence.REFERENCE,
    kinds={"pandas"},
    deps=[dg.AssetKey(["raw", "financial_statements"])],
)
def bronze_financial_statements(
    fundamentals: FundamentalsResource, lake: LakeResource
) -> TableWrite:
    """Rebuilt from every landed fetch of the configured source and of dropped files."""
    raw = lake.raw()
    manifests = [
        m
        for s in dict.fromkeys((fundamentals.source, FILE_DROP_SOURCE))
        for m in raw.manifests(s, DATASET)
    ]
    documents = statement_documents(raw, manifests)
    try:
        rows = statement_rows(documents)
    except StatementFormatError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from exc
    return TableWrite(
        rows=rows,
        metadata={
            "fetches": dg.MetadataValue.int(len(manifests)),
            "documents": dg.MetadataValue.int(len(documents)),
            "tickers": dg.MetadataValue.int(int(rows["ticker"].nunique())),
        },
    )


@table_asset(
    contracts.FINANCIAL_FACTS,
    cadence=cadence.REFERENCE,
    kinds={"sql"},
    deps=[contracts.BRONZE_FINANCIAL_STATEMENTS],
)
def silver_financial_facts() -> TableWrite:
    return TableWrite(rows=SILVER_FACTS_SQL)


@table_asset(
    contracts.FUNDAMENTALS_DAILY,
    cadence=cadence.DAILY,
    kinds={"sql"},
    deps=[contracts.FINANCIAL_FACTS, silver.DAILY_BARS, silver.CORPORATE_ACTIONS],
)
def gold_fundamentals_daily(context: dg.AssetExecutionContext) -> TableWrite:
    """Reads the run's sessions of silver bars and, per ticker, the facts that can enter a ratio
    in them (the last change before the first session on): a new session costs one session."""
    sessions = sessions_of(context)
    scope = ticker_scope(context)
    return TableWrite(
        rows=GOLD_FUNDAMENTALS_SQL,
        params={
            "start": sessions[0],
            "end": sessions[-1],
            "tickers": list(scope) if scope is not None else None,
        },
        tickers=scope,
        chunk_sessions=GOLD_CHUNK_SESSIONS,
    )
