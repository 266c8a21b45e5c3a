"""Gold layer, Python part: technical features per ticker and session (TA-Lib definitions)."""

import datetime as dt
from collections.abc import Iterator

import dagster as dg
import duckdb
import numpy as np
import pandas as pd

from marketflow_assets import cadence
from marketflow_assets.assets.table_asset import table_asset
from marketflow_assets.calendar import xnys
from marketflow_assets.contracts import gold as contracts
from marketflow_assets.contracts import silver
from marketflow_assets.partitions import sessions_of
from marketflow_assets.resources import ticker_scope
from marketflow_assets.storage.warehouse import TableWrite, WarehouseResource, query_frame
from marketflow_assets.transforms.indicators import (
    LOOKBACK_SESSIONS,
    PANEL_COLUMNS,
    daily_features,
)

PANEL_SQL = f"""
SELECT {", ".join(PANEL_COLUMNS)}
FROM silver.daily_bars
WHERE session_date BETWEEN $start AND $end
    AND ($tickers IS NULL OR list_contains($tickers, ticker))
ORDER BY ticker, session_date
"""


def lookback_start(first: dt.date) -> dt.date:
    """The session `LOOKBACK_SESSIONS` before `first` (or the calendar's first session)."""
    sessions = xnys().sessions
    i = int(np.searchsorted(sessions, np.datetime64(first, "D")))
    return sessions[max(i - LOOKBACK_SESSIONS, 0)].item()


def read_panel(
    warehouse: WarehouseResource, start: dt.date, end: dt.date, tickers: tuple[str, ...] | None
) -> pd.DataFrame:
    """silver.daily_bars rows of `tickers` (None = all) in [start, end], sorted for the kernel."""
    params = {"start": start, "end": end, "tickers": list(tickers) if tickers else None}
    with warehouse.get_connection() as con:
        try:
            return query_frame(con, PANEL_SQL, params)
        except duckdb.CatalogException as exc:
            raise dg.Failure(
                f"silver.daily_bars is not readable ({exc}); materialize silver/daily_bars first",
                allow_retries=False,
            ) from exc


# Silver rows (lookback included) read and computed at a time by a range run.
PANEL_BATCH_ROWS = 250_000


def panel_batches(
    warehouse: WarehouseResource, start: dt.date, end: dt.date, tickers: tuple[str, ...] | None
) -> list[tuple[str, ...]]:
    """The tickers of silver.daily_bars in [start, end] (and `tickers`), in batches of whole
    tickers of about PANEL_BATCH_ROWS rows."""
    params = {"start": start, "end": end, "tickers": list(tickers) if tickers else None}
    with warehouse.get_connection() as con:
        try:
            counts = con.execute(
                "SELECT ticker, count(*) AS n FROM silver.daily_bars "
                "WHERE session_date BETWEEN $start AND $end "
                "AND ($tickers IS NULL OR list_contains($tickers, ticker)) "
                "GROUP BY ticker ORDER BY ticker",
                params,
            ).df()
        except duckdb.CatalogException as exc:
            raise dg.Failure(
                f"silver.daily_bars is not readable ({exc}); materialize silver/daily_bars first",
                allow_retries=False,
            ) from exc
    before = counts["n"].cumsum().to_numpy() - counts["n"].to_numpy()
    number = before // PANEL_BATCH_ROWS
    return [tuple(group) for _, group in counts["ticker"].groupby(number, sort=True)]


@table_asset(
    contracts.DAILY_FEATURES,
    cadence=cadence.DAILY,
    kinds={"python", "talib"},
    deps=[silver.DAILY_BARS],
)
def gold_daily_features(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> TableWrite:
    """Reads the run's sessions plus a fixed lookback (`LOOKBACK_SESSIONS`) of the tickers in
    scope, so a run costs the same whatever the warehouse holds, and writes the run's sessions."""
    sessions = sessions_of(context)
    scope = ticker_scope(context)
    read_from = lookback_start(sessions[0])
    metadata = {
        "silver_rows_read": dg.MetadataValue.int(0),
        "lookback_from": read_from.isoformat(),
        "tickers": dg.MetadataValue.int(0),
    }

    def batches() -> Iterator[pd.DataFrame]:
        # Every feature looks at one ticker's history: batches of whole tickers give the same
        # rows with the memory of one batch (the IO manager stages them, then swaps the scope).
        read, tickers = 0, 0
        for batch in panel_batches(warehouse, read_from, sessions[-1], scope):
            panel = read_panel(warehouse, read_from, sessions[-1], batch)
            features = daily_features(panel)
            rows = features[features["session_date"] >= pd.Timestamp(sessions[0])]
            read, tickers = read + len(panel), tickers + int(rows["ticker"].nunique())
            metadata["silver_rows_read"] = dg.MetadataValue.int(read)
            metadata["tickers"] = dg.MetadataValue.int(tickers)
            del panel, features
            yield rows

    return TableWrite(rows=batches(), tickers=scope, metadata=metadata)
