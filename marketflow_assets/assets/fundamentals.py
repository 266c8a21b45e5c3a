"""Fundamentals: statements landed raw, typed in bronze, versioned facts in silver, point-in-time
ratios in gold (see `contracts/fundamentals.py` for the definitions and the known_at rules).

raw/financial_statements      one JSON document per ticker and fetch, as the provider served it
bronze/financial_statements   every number of every fetched document that says something new
bronze/statement_documents    every document read: its hash, and whether its numbers were stored
silver/financial_facts        bitemporal versions: known_at (rule per row), first_seen_at,
                              superseded_at; a changed value opens a version, none is overwritten
gold/fundamentals_daily       ratios per ticker and session from the facts known that day
"""

import json

import dagster as dg
import pandas as pd

from marketflow_assets import cadence
from marketflow_assets.assets.raw import PROVIDER_RETRY_POLICY, fail_fast, run_tickers
from marketflow_assets.assets.table_asset import table_asset, table_multi_asset, table_spec
from marketflow_assets.calendar import EXCHANGE_TZ
from marketflow_assets.contracts import fundamentals as contracts
from marketflow_assets.contracts import silver
from marketflow_assets.ingestion.statement_drops import land_dropped_statements
from marketflow_assets.ingestion.statements_refresh import (
    REASONS,
    RefreshPolicy,
    decide,
    ticker_state,
)
from marketflow_assets.partitions import sessions_of
from marketflow_assets.resources import MarketDataResource, UniverseResource, ticker_scope
from marketflow_assets.resources.fundamentals import FundamentalsResource
from marketflow_assets.settings import Settings
from marketflow_assets.sources.fundamentals import DATASET
from marketflow_assets.storage.lake import LakeResource
from marketflow_assets.storage.raw_io_manager import FILE_DROP_SOURCE, Landing, RawLanding
from marketflow_assets.storage.raw_lake import FetchManifest, RawLake
from marketflow_assets.storage.warehouse import TableWrite, WarehouseResource, ensure_all_tables
from marketflow_assets.transforms.fundamentals import (
    GOLD_FUNDAMENTALS_SQL,
    SILVER_FACTS_SQL,
    StatementFormatError,
    statement_rows,
)
from marketflow_assets.transforms.statement_documents import (
    DOCUMENT,
    document_ledger,
    mark_stored,
    out_of_order,
)

# Gold is computed this many sessions at a time (same rows, bounded memory on long backfills).
GOLD_CHUNK_SESSIONS = 1000


def fundamentals_resource(settings: Settings, market_data: MarketDataResource):
    return FundamentalsResource(
        source=settings.fundamentals_source or settings.source,
        edgar_user_agent=settings.edgar_user_agent,
        market_data=market_data,
    )


class StatementsFetchConfig(dg.Config):
    refresh: bool = False
    """Fetch every ticker's statements again, whatever the refresh policy says."""
    max_age_days: int = 30
    """Routine refresh: each ticker is fetched about once every this many days, on a weekday
    slot given by a stable hash of the ticker (every max_age_days x 5/7 weekdays, so a daily
    run asks that share of the universe), and when it was not asked for a week longer.
    Releases are fetched when due, see `ingestion/statements_refresh.py`."""
    release_watch_days: int = 7
    """Around an expected earnings release (after a listed date, from this many days before an
    estimated one), fetch the ticker once a day until its statements show the release."""
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
        "JSON object per fetch holding a document per ticker, plus a manifest. Fetches a ticker "
        "when an earnings release is due, on its routine slot every `max_age_days`, or when "
        "`refresh` is set (ingestion/statements_refresh.py); one request per ticker."
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
        raw = lake.raw()
        try:
            policy = RefreshPolicy(config.max_age_days, config.release_watch_days)
        except ValueError as exc:
            raise dg.Failure(
                f"raw/financial_statements config: {exc}", allow_retries=False
            ) from exc
        state = ticker_state(raw, raw.manifests(source.name, DATASET), tickers)
        reasons = decide(state, now, policy, forced=config.refresh)
        wanted = tuple(t for t in tickers if reasons[t])
        asked_for = reasons[reasons != ""].value_counts()
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
            "fetch_reasons": dg.MetadataValue.json(
                {r: int(asked_for.get(r, 0)) for r in REASONS if r in asked_for}
            ),
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


class BronzeStatementsConfig(dg.Config):
    reread: bool = False
    """Read every landed statement document again (after a parser change): both bronze tables
    are rebuilt from raw."""


RAW_STATEMENTS = dg.AssetKey(["raw", "financial_statements"])
_STATEMENT_COLUMNS = ", ".join(contracts.BRONZE_FINANCIAL_STATEMENTS.column_names)
_DOCUMENT_COLUMNS = ", ".join(contracts.STATEMENT_DOCUMENTS.column_names)


def _kept_and_new(table: str, columns: str, new: str) -> str:
    """The rows of `table` for the tickers in `$kept` (without the documents being read now,
    in case a killed step wrote them already) followed by the frame `new`."""
    return (
        f"SELECT {columns} FROM {table} ANTI JOIN read_now USING (ticker, fetch_id) "
        f"WHERE list_contains($kept, ticker) UNION ALL BY NAME SELECT {columns} FROM {new}"
    )


# statement_documents' lineage columns -> the contracts' names.
_LINEAGE = {
    "_source": "source",
    "_fetch_id": "fetch_id",
    "_fetched_at": "fetched_at",
    "_object_key": "raw_object",
}


def _index(frame: pd.DataFrame, fetch_id: str = "fetch_id") -> pd.MultiIndex:
    """(ticker, fetch) of each row, to match documents across frames."""
    return pd.MultiIndex.from_arrays([frame["ticker"], frame[fetch_id]])


def read_documents(warehouse: WarehouseResource) -> pd.DataFrame:
    """bronze.statement_documents (ticker, fetch_id, fetched_at, content_hash), empty before
    the first run."""
    with warehouse.get_connection() as con:
        ensure_all_tables(con)
        return con.execute(
            "SELECT ticker, fetch_id, fetched_at, content_hash FROM bronze.statement_documents"
        ).df()


@table_multi_asset(
    table_spec(
        contracts.BRONZE_FINANCIAL_STATEMENTS,
        cadence=cadence.REFERENCE,
        kinds={"pandas"},
        deps=[RAW_STATEMENTS],
    ),
    table_spec(
        contracts.STATEMENT_DOCUMENTS,
        cadence=cadence.REFERENCE,
        kinds={"pandas"},
        deps=[RAW_STATEMENTS],
    ),
    name="bronze_financial_statements",
    # The ledger says what the statements hold: one without the other would re-read or skip.
    can_subset=False,
)
def bronze_financial_statements(
    context: dg.AssetExecutionContext,
    config: BronzeStatementsConfig,
    fundamentals: FundamentalsResource,
    lake: LakeResource,
    warehouse: WarehouseResource,
):
    """Reads the statement documents landed since the last run (configured source and dropped
    files) and stores the numbers of those that differ from their ticker's previous document
    (`transforms/statement_documents.py`); every document read is listed in the ledger."""
    raw = lake.raw()
    manifests = [
        m
        for s in dict.fromkeys((fundamentals.source, FILE_DROP_SOURCE))
        for m in raw.manifests(s, DATASET)
    ]
    read = read_documents(warehouse)
    if config.reread:
        read = read.iloc[0:0]
    listed = pd.DataFrame(
        [(t, m.fetch_id, m.fetched_at) for m in manifests for t in m.ok_tickers],
        columns=["ticker", "fetch_id", "fetched_at"],
    )
    listed["fetched_at"] = pd.to_datetime(listed["fetched_at"], utc=True)
    new = listed[~_index(listed).isin(_index(read))]
    again = out_of_order(new, read)
    wanted = pd.concat([new, listed[listed["ticker"].isin(again)]])
    fetches = set(wanted["fetch_id"])
    documents = statement_documents(raw, [m for m in manifests if m.fetch_id in fetches])
    documents = documents[_index(documents, "_fetch_id").isin(_index(wanted))]
    try:
        rows = statement_rows(documents)
    except StatementFormatError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from exc
    ledger = document_ledger(documents.rename(columns=_LINEAGE).drop(columns="record"), rows)
    ledger["stored"] = mark_stored(ledger, read[~read["ticker"].isin(again)])
    stored = ledger.loc[ledger["stored"], DOCUMENT]
    new_rows = rows[_index(rows).isin(_index(stored))]
    changed = set(stored["ticker"]) | again
    touched = set(ledger["ticker"]) | again
    context.log.info(
        f"read {len(ledger)} statement document(s) of {ledger['ticker'].nunique()} ticker(s): "
        f"{len(stored)} stored, {len(ledger) - len(stored)} repeating their ticker's previous "
        f"one; read again from the first: {sorted(again) or 'none'}"
    )
    frames = {"read_now": ledger[DOCUMENT]}
    if new_rows.empty:
        new_rows = contracts.BRONZE_FINANCIAL_STATEMENTS.empty_frame()
    if ledger.empty:
        ledger = contracts.STATEMENT_DOCUMENTS.empty_frame()
    yield dg.Output(
        TableWrite(
            rows=_kept_and_new(
                "bronze.financial_statements", _STATEMENT_COLUMNS, "new_statement_rows"
            ),
            params={"kept": sorted(changed - again)},
            frames={**frames, "new_statement_rows": new_rows},
            tickers=None if config.reread else tuple(sorted(changed)),
            metadata={
                "documents_read": dg.MetadataValue.int(len(ledger)),
                "documents_stored": dg.MetadataValue.int(len(stored)),
                "numbers_stored": dg.MetadataValue.int(len(new_rows)),
                "tickers_read_again": dg.MetadataValue.int(len(again)),
            },
        ),
        output_name="bronze__financial_statements",
    )
    yield dg.Output(
        TableWrite(
            rows=_kept_and_new("bronze.statement_documents", _DOCUMENT_COLUMNS, "new_documents"),
            params={"kept": sorted(touched - again)},
            frames={**frames, "new_documents": ledger},
            tickers=None if config.reread else tuple(sorted(touched)),
            metadata={"documents_read": dg.MetadataValue.int(len(ledger))},
        ),
        output_name="bronze__statement_documents",
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
