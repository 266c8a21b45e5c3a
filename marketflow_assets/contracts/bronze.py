"""Bronze contracts: typed provider rows, one table per dataset, nothing filtered out."""

from __future__ import annotations

from marketflow_assets.contracts.model import Col, TableContract

LINEAGE = (
    Col("source", "VARCHAR", "Source that served the row (yfinance, simulator, csv, file)."),
    Col("fetch_id", "VARCHAR", "Raw fetch the row came from (its manifest in the lake)."),
    Col("fetched_at", "TIMESTAMPTZ", "Provider clock at the fetch (UTC); latest fetch wins."),
    Col("raw_object", "VARCHAR", "Key of the raw object holding the untouched payload row."),
)

_PROVIDER_PRICE = "as served by the provider, in its as-of basis (split-adjusted to the fetch time)"

DAILY_BARS = TableContract(
    table="bronze.daily_bars",
    description=(
        "Provider daily bars, typed, one row per payload row of the latest fetch of each "
        "(ticker, ts, interval). Keeps rows silver will reject (duplicates, bad ticks)."
    ),
    columns=(
        Col("ticker", "VARCHAR", "Yahoo symbol."),
        Col("ts", "TIMESTAMPTZ", "Bar timestamp from the provider, in UTC."),
        Col("interval", "VARCHAR", "Bar interval: '1d'."),
        Col("bar_date", "DATE", "Bar date in exchange time as the provider stamped it."),
        Col(
            "session_date",
            "DATE",
            "Session partition: bar_date, or the session before a non-session date.",
        ),
        Col("open", "DOUBLE", f"Open {_PROVIDER_PRICE}.", nullable=True),
        Col("high", "DOUBLE", f"High {_PROVIDER_PRICE}.", nullable=True),
        Col("low", "DOUBLE", f"Low {_PROVIDER_PRICE}.", nullable=True),
        Col("close", "DOUBLE", f"Close {_PROVIDER_PRICE}.", nullable=True),
        Col(
            "adj_close",
            "DOUBLE",
            "Provider's Adj Close (splits and dividends as of the fetch).",
            nullable=True,
        ),
        Col(
            "volume", "DOUBLE", "Volume as served (split-adjusted as of the fetch).", nullable=True
        ),
        Col(
            "dividends",
            "DOUBLE",
            "Dividend on the ex-date row, as of the fetch; NULL if the payload has no such column.",
            nullable=True,
        ),
        Col(
            "stock_splits",
            "DOUBLE",
            "Split ratio on the ex-date row (0 elsewhere); NULL if the payload has no such column.",
            nullable=True,
        ),
        *LINEAGE,
    ),
    key=("ticker", "ts", "interval"),
    key_unique=False,
)

INTRADAY_BARS_1M = TableContract(
    table="bronze.intraday_bars_1m",
    description=(
        "Provider one-minute bars, typed; per (ticker, ts) the latest fetch wins, so a bar that "
        "was still forming at one poll is replaced by the next poll's version."
    ),
    columns=(
        Col("ticker", "VARCHAR", "Yahoo symbol."),
        Col("ts", "TIMESTAMPTZ", "Minute start, UTC."),
        Col("interval", "VARCHAR", "Bar interval: '1m'."),
        Col("bar_date", "DATE", "Date of the minute in exchange time."),
        Col("session_date", "DATE", "Session partition."),
        Col("open", "DOUBLE", "Open as served.", nullable=True),
        Col("high", "DOUBLE", "High as served.", nullable=True),
        Col("low", "DOUBLE", "Low as served.", nullable=True),
        Col("close", "DOUBLE", "Close as served.", nullable=True),
        Col("volume", "DOUBLE", "Volume as served.", nullable=True),
        *LINEAGE,
    ),
    key=("ticker", "ts", "interval"),
    key_unique=False,
)

COMPANY_PROFILES = TableContract(
    table="bronze.company_profiles",
    description="Latest provider profile per ticker, typed fields plus the whole JSON record.",
    columns=(
        Col("ticker", "VARCHAR", "Yahoo symbol."),
        Col("name", "VARCHAR", "longName (or shortName).", nullable=True),
        Col(
            "exchange",
            "VARCHAR",
            "Exchange code as the provider gives it (NMS, NYQ, ...).",
            nullable=True,
        ),
        Col("currency", "VARCHAR", "Trading currency.", nullable=True),
        Col("quote_type", "VARCHAR", "EQUITY, INDEX, ETF, ...", nullable=True),
        Col("sector", "VARCHAR", "Sector (Yahoo's classification).", nullable=True),
        Col("industry", "VARCHAR", "Industry (Yahoo's classification).", nullable=True),
        Col("payload", "VARCHAR", "The provider's record, as JSON text."),
        *LINEAGE,
    ),
    key=("ticker",),
    partition_column=None,
)
