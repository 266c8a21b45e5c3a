"""Silver layer: validated, deduplicated, session-aligned, corporate-action adjusted."""

import datetime as dt
from collections.abc import Iterator

import dagster as dg
import pandas as pd

from marketflow_assets import cadence
from marketflow_assets.assets.table_asset import table_asset, table_multi_asset, table_spec
from marketflow_assets.calendar import EXCHANGE
from marketflow_assets.calendar import session_hours as exchange_session_hours
from marketflow_assets.contracts import bronze
from marketflow_assets.contracts import silver as contracts
from marketflow_assets.exchanges import listing_of, listings_frame, mics_of
from marketflow_assets.partitions import INTRADAY_CHUNK_SESSIONS, sessions_of
from marketflow_assets.resources import MarketDataResource, UniverseResource, ticker_scope
from marketflow_assets.storage.lake import LakeResource
from marketflow_assets.storage.raw_io_manager import FILE_DROP_SOURCE
from marketflow_assets.storage.warehouse import TableWrite, WarehouseResource, ensure_all_tables
from marketflow_assets.transforms.adjustments import (
    corporate_actions_frame,
    silver_intraday_bars_sql,
)
from marketflow_assets.transforms.repairs import DIVIDEND_REPAIR_KINDS, RepairSwitches
from marketflow_assets.transforms.silver_validation import (
    intraday_rejected,
    validate_daily_bars_in_batches,
)


def scope_params(context: dg.AssetExecutionContext) -> dict:
    sessions = sessions_of(context)
    scope = ticker_scope(context)
    return {
        "start": sessions[0],
        "end": sessions[-1],
        "tickers": list(scope) if scope is not None else None,
    }


def session_hours(
    context: dg.AssetExecutionContext, universe: UniverseResource, sessions: list[dt.date]
) -> pd.DataFrame:
    """Regular hours (`calendar.session_hours`) of the run's sessions on every exchange of the
    universe and the run's ticker scope (plus XNYS), for SQL to join on each ticker's own
    exchange: one calendar lookup per exchange, never per row."""
    mics = mics_of([*universe.symbols(), *(ticker_scope(context) or ())]) | {EXCHANGE}
    return exchange_session_hours(mics, sessions[0], sessions[-1])


class DividendRepairConfig(dg.Config):
    """A switch per dividend repair kind (README, "Repairs"); off keeps the provider's amount."""

    dividend_unit: bool = True
    dividend_duplicate: bool = True
    dividend_date: bool = True
    dividend_unpriced: bool = True


@table_asset(
    contracts.CORPORATE_ACTIONS,
    cadence=cadence.DAILY,
    kinds={"sql"},
    deps=[dg.AssetKey(["raw", "daily_bars"])],
)
def silver_corporate_actions(
    market_data: MarketDataResource, lake: LakeResource, config: DividendRepairConfig
) -> TableWrite:
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
            "open",
            "adj_ratio",
            "prev_adj_ratio",
            "close",
            "next_open",
            "next_date",
            "priced",
            "fetched_at",
            "fetch_id",
            "source",
        ],
    )
    events["fetched_at"] = pd.to_datetime(events["fetched_at"], utc=True)
    switches = RepairSwitches(
        dividend_unit=config.dividend_unit,
        dividend_duplicate=config.dividend_duplicate,
        dividend_date=config.dividend_date,
        dividend_unpriced=config.dividend_unpriced,
    )
    actions = corporate_actions_frame(events, switches)
    return TableWrite(
        rows=actions,
        metadata={
            "splits": dg.MetadataValue.int(int((actions["split_ratio"] != 1).sum())),
            "dividends": dg.MetadataValue.int(int((actions["dividend"] > 0).sum())),
            **{
                f"repaired_{kind}": dg.MetadataValue.int(
                    int((actions["repair_reason"] == kind).sum())
                )
                for kind in DIVIDEND_REPAIR_KINDS
            },
        },
    )


@table_asset(
    contracts.INTRADAY_BARS_1M,
    cadence=cadence.INTRADAY,
    kinds={"sql"},
    deps=[bronze.INTRADAY_BARS_1M, contracts.CORPORATE_ACTIONS],
)
def silver_intraday_bars_1m(
    context: dg.AssetExecutionContext, universe: UniverseResource
) -> TableWrite:
    sessions = sessions_of(context)
    return TableWrite(
        rows=silver_intraday_bars_sql(),
        params=scope_params(context),
        tickers=ticker_scope(context),
        frames={"session_hours": session_hours(context, universe, sessions)},
        # Every rule (hours, duplicates per bar, splits) looks at one session's bars at a time.
        chunk_sessions=INTRADAY_CHUNK_SESSIONS,
    )


@table_asset(contracts.SESSION_HOURS, cadence=cadence.INTRADAY, kinds={"pandas"})
def silver_session_hours(
    context: dg.AssetExecutionContext, universe: UniverseResource
) -> TableWrite:
    """Each universe ticker x its own exchange's sessions among the run's: a join of the
    exchanges' hours (one calendar lookup per exchange) with the tickers' MICs."""
    sessions = sessions_of(context)
    tickers = list(ticker_scope(context) or universe.symbols())
    listed = pd.DataFrame({"ticker": tickers, "mic": [listing_of(t).mic for t in tickers]})
    hours = exchange_session_hours(set(listed["mic"]), sessions[0], sessions[-1])
    hours = hours[pd.to_datetime(hours["session_date"]).isin(pd.to_datetime(sessions))]
    rows = listed.merge(hours, on="mic")
    return TableWrite(
        rows=rows[contracts.SESSION_HOURS.column_names],
        tickers=ticker_scope(context),
        metadata={"exchanges": dg.MetadataValue.json(sorted(set(listed["mic"])))},
    )


class SilverRepairConfig(dg.Config):
    """A switch per repair kind (README, "Repairs"): off serves that error as the provider sent
    it (or quarantines it, where the bar is invalid without the repair)."""

    range_widened: bool = True
    unit_100x: bool = True
    split_unapplied: bool = True
    adj_close_recomputed: bool = True

    def switches(self) -> RepairSwitches:
        return RepairSwitches(
            range_widened=self.range_widened,
            unit_100x=self.unit_100x,
            split_unapplied=self.split_unapplied,
            adj_close_recomputed=self.adj_close_recomputed,
        )


def _daily_spec(contract, deps: list) -> dg.AssetSpec:
    return table_spec(contract, cadence=cadence.DAILY, kinds={"pandas"}, deps=deps)


# The bar repairs counted in silver.daily_bars' metadata.
BAR_REPAIR_KINDS = ("range_widened", "unit_100x", "split_unapplied", "adj_close_recomputed")


@table_multi_asset(
    _daily_spec(contracts.DAILY_BARS, [bronze.DAILY_BARS, contracts.CORPORATE_ACTIONS]),
    _daily_spec(contracts.REJECTED_BARS, [bronze.DAILY_BARS, bronze.INTRADAY_BARS_1M]),
    _daily_spec(contracts.BAR_REPAIRS, [bronze.DAILY_BARS]),
    name="silver_daily_validation",
    # Accepted, rejected and repaired rows are three outputs of one classification: materializing
    # one without the others would break bronze = silver + rejected (row_reconciliation).
    can_subset=False,
)
def silver_daily_validation(
    context: dg.AssetExecutionContext,
    config: SilverRepairConfig,
    warehouse: WarehouseResource,
    universe: UniverseResource,
):
    """Validate the run's bronze daily bars once: accepted (and repaired) bars to silver, the
    others to silver.rejected_bars with a reason, every repair to silver.bar_repairs.

    Validated in batches of whole tickers (`validate_daily_bars_in_batches`): the accepted bars
    stream into silver.daily_bars batch by batch (the IO manager stages them and swaps the run's
    scope in at the end), so a 10-year range holds one batch in memory, not the whole range.
    The batches are Arrow-backed frames: DuckDB reads them back without a conversion.
    The rejected and repair rows (few) are collected on the way and written after."""
    params = scope_params(context)
    tickers = ticker_scope(context)
    hours = session_hours(context, universe, sessions_of(context))
    switches = config.switches()
    rejected: list[pd.DataFrame] = []
    repairs: list[pd.DataFrame] = []
    counts: dict[str, int] = {}
    metadata = {f"repaired_{kind}": dg.MetadataValue.int(0) for kind in BAR_REPAIR_KINDS}
    done: list[bool] = []

    def accepted_bars() -> Iterator[pd.DataFrame]:
        with warehouse.get_connection() as con:
            ensure_all_tables(con)
            for batch in validate_daily_bars_in_batches(
                con, params["start"], params["end"], params["tickers"], switches, arrow_bars=True
            ):
                rejected.append(batch.rejected)
                repairs.append(batch.repairs)
                kinds = batch.repairs["kind"].str.split(",").explode().value_counts()
                for kind in BAR_REPAIR_KINDS:
                    counts[kind] = counts.get(kind, 0) + int(kinds.get(kind, 0))
                    metadata[f"repaired_{kind}"] = dg.MetadataValue.int(counts[kind])
                yield batch.bars
                del batch
            rejected.append(
                intraday_rejected(con, params["start"], params["end"], params["tickers"], hours)
            )
        done.append(True)

    def collected(parts: list[pd.DataFrame], contract) -> Iterator[pd.DataFrame]:
        # Written after silver.daily_bars, whose batches fill `parts`.
        if not done:
            raise dg.Failure(
                f"{contract.table} was to be written before silver.daily_bars was validated"
            )
        frames = [p for p in parts if not p.empty]
        if frames:
            yield pd.concat(frames, ignore_index=True)
        elif parts:
            yield parts[0]

    yield dg.Output(
        TableWrite(rows=accepted_bars(), tickers=tickers, metadata=metadata),
        output_name="silver__daily_bars",
    )
    yield dg.Output(
        TableWrite(rows=collected(rejected, contracts.REJECTED_BARS), tickers=tickers),
        output_name="silver__rejected_bars",
    )
    yield dg.Output(
        TableWrite(rows=collected(repairs, contracts.BAR_REPAIRS), tickers=tickers),
        output_name="silver__bar_repairs",
    )


@table_asset(
    contracts.SYMBOLS,
    cadence=cadence.REFERENCE,
    kinds={"sql"},
    deps=[bronze.COMPANY_PROFILES],
)
def silver_symbols(universe: UniverseResource) -> TableWrite:
    return TableWrite(
        rows="""
SELECT p.ticker, name, exchange,
    -- the listing's ISO currency; Yahoo's profile says the price unit (GBp) there
    coalesce(l.currency, p.currency) AS currency, quote_type,
    CASE WHEN quote_type = 'EQUITY' THEN sector END AS sector,
    CASE WHEN quote_type = 'EQUITY' THEN industry END AS industry,
    list_contains($universe, p.ticker) AS in_universe,
    source,
    fetched_at AS updated_at,
    l.mic,
    coalesce(l.price_unit, p.currency) AS price_unit
FROM bronze.company_profiles p
LEFT JOIN listings l
    ON l.suffix = CASE WHEN contains(p.ticker, '.') THEN upper(regexp_extract(p.ticker, '\\.([^.]+)$', 1)) ELSE '' END
""",
        params={"universe": universe.symbols()},
        frames={"listings": listings_frame()},
    )
