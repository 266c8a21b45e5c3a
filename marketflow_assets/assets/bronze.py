"""Bronze layer: raw payloads typed into DuckDB, latest fetch per bar, nothing filtered out."""

import datetime as dt
import json
from collections.abc import Iterator

import dagster as dg
import numpy as np
import pandas as pd

from marketflow_assets import cadence
from marketflow_assets.assets.table_asset import table_asset
from marketflow_assets.contracts import bronze as contracts
from marketflow_assets.partitions import sessions_of
from marketflow_assets.resources import MarketDataResource, ticker_scope
from marketflow_assets.storage.lake import LakeResource
from marketflow_assets.storage.raw_io_manager import FILE_DROP_SOURCE
from marketflow_assets.storage.warehouse import TableWrite
from marketflow_assets.transforms.payloads import (
    PayloadSchemaError,
    check_payload_columns,
    latest_fetch_rows,
    type_bars,
)

# Raw rows typed at a time by a range run: the typed frame of one batch, not of the range.
TYPED_BATCH_ROWS = 250_000


def typed_bars(context: dg.AssetExecutionContext, raw: pd.DataFrame, interval: str) -> TableWrite:
    """Typed latest-fetch rows of the run's partitions (and tickers), written in batches of
    whole tickers (the latest fetch is decided per bar, so per ticker): the IO manager stages
    them and replaces the scope at once."""
    scope = ticker_scope(context)
    if scope is not None:
        raw = raw[raw["Ticker"].isin(scope)]
    contract = contracts.DAILY_BARS if interval == "1d" else contracts.INTRADAY_BARS_1M
    metadata = {
        "raw_rows_read": dg.MetadataValue.int(len(raw)),
        "superseded_rows": dg.MetadataValue.int(0),
        "fetches_used": dg.MetadataValue.int(0),
    }
    if raw.empty:
        return TableWrite(
            rows=pd.DataFrame(columns=contract.column_names), tickers=scope, metadata=metadata
        )
    try:  # a payload without a required column fails the step before anything is staged
        check_payload_columns(raw, interval)
    except PayloadSchemaError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from exc
    # batch number per row: whole tickers, about TYPED_BATCH_ROWS rows each
    codes, _ = pd.factorize(raw["Ticker"], sort=True)
    per_ticker = np.bincount(codes)
    batch_of_ticker = (np.cumsum(per_ticker) - per_ticker) // TYPED_BATCH_ROWS
    batch = batch_of_ticker[codes]

    def batches() -> Iterator[pd.DataFrame]:
        superseded, fetches = 0, set()
        for number in np.unique(batch_of_ticker):
            rows = raw[batch == number]
            typed = latest_fetch_rows(type_bars(rows, interval))
            superseded += len(rows) - len(typed)
            fetches.update(typed["fetch_id"].unique())
            metadata["superseded_rows"] = dg.MetadataValue.int(superseded)
            metadata["fetches_used"] = dg.MetadataValue.int(len(fetches))
            yield typed[contract.column_names]
            del rows, typed

    return TableWrite(rows=batches(), tickers=scope, metadata=metadata)


@table_asset(
    contracts.DAILY_BARS,
    cadence=cadence.DAILY,
    kinds={"pandas"},
    ins={"raw": dg.AssetIn(key=["raw", "daily_bars"])},
)
def bronze_daily_bars(context: dg.AssetExecutionContext, raw: pd.DataFrame) -> TableWrite:
    return typed_bars(context, raw, "1d")


@table_asset(
    contracts.INTRADAY_BARS_1M,
    cadence=cadence.INTRADAY,
    kinds={"pandas"},
    deps=[dg.AssetKey(["raw", "intraday_bars_1m"])],
)
def bronze_intraday_bars_1m(
    context: dg.AssetExecutionContext, market_data: MarketDataResource, lake: LakeResource
) -> TableWrite:
    """Session by session (a session of 500 tickers is ~195k bars), so memory stays flat
    however long the range: the IO manager stages the batches and replaces the range at once.
    A bar belongs to exactly one session, so the latest fetch per bar is decided within it."""
    raw = lake.raw()
    manifests = [
        m
        for s in dict.fromkeys((market_data.source, FILE_DROP_SOURCE))
        for m in raw.manifests(s, "intraday_bars_1m")
    ]
    scope = ticker_scope(context)
    metadata = {"raw_rows_read": 0, "superseded_rows": 0, "fetches_used": 0}
    fetches: set[str] = set()

    def session_rows(session: dt.date) -> pd.DataFrame | None:
        frame = raw.read_frames(manifests, {session.isoformat()})
        if scope is not None and not frame.empty:
            frame = frame[frame["Ticker"].isin(scope)]
        if frame.empty:
            return None
        try:
            typed = latest_fetch_rows(type_bars(frame, "1m"))
        except PayloadSchemaError as exc:
            raise dg.Failure(str(exc), allow_retries=False) from exc
        metadata["raw_rows_read"] += len(frame)
        metadata["superseded_rows"] += len(frame) - len(typed)
        fetches.update(typed["fetch_id"].unique())
        metadata["fetches_used"] = len(fetches)
        return typed[contracts.INTRADAY_BARS_1M.column_names]

    def batches() -> Iterator[pd.DataFrame]:
        # No frame outlives its yield: the next session is read only after this one is staged.
        for session in sessions_of(context):
            rows = session_rows(session)
            if rows is not None:
                yield rows
                del rows

    return TableWrite(rows=batches(), tickers=scope, metadata=metadata)


PROFILE_FIELDS = {
    "name": ("longName", "shortName"),
    "exchange": ("exchange",),
    "currency": ("currency",),
    "quote_type": ("quoteType",),
    "sector": ("sector",),
    "industry": ("industry",),
}


def _profile_fields(record_json: str) -> dict[str, str | None]:
    record = json.loads(record_json)
    return {
        column: next((record[k] for k in keys if record.get(k) not in (None, "")), None)
        for column, keys in PROFILE_FIELDS.items()
    }


@table_asset(
    contracts.COMPANY_PROFILES,
    cadence=cadence.REFERENCE,
    kinds={"pandas"},
    ins={"raw": dg.AssetIn(key=["raw", "company_profiles"])},
)
def bronze_company_profiles(raw: pd.DataFrame) -> TableWrite:
    latest = raw.sort_values(["_fetched_at", "_fetch_id"]).drop_duplicates("ticker", keep="last")
    # One JSON parse per ticker (a few hundred at most), not per bar.
    fields = pd.DataFrame(
        [_profile_fields(r) for r in latest["record"]],
        index=latest.index,
        columns=list(PROFILE_FIELDS),
    )
    rows = pd.concat([latest[["ticker"]], fields], axis=1).assign(
        payload=latest["record"],
        source=latest["_source"],
        fetch_id=latest["_fetch_id"],
        fetched_at=latest["_fetched_at"],
        raw_object=latest["_object_key"],
    )
    return TableWrite(rows=rows[contracts.COMPANY_PROFILES.column_names].reset_index(drop=True))
