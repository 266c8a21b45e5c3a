"""Response models: they define the OpenAPI schema exactly (field names, types, nullability).

Large responses are serialised by DuckDB itself (`queries.py`) rather than row by row through
these models; the schema fuzzing test checks that what is sent conforms to them."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

NextCursor = Field(
    None, description="Pass as `cursor` to get the next page; null when no rows remain."
)


class ErrorResponse(BaseModel):
    detail: str = Field(description="What is wrong, in words")
    parameter: str | None = Field(None, description="The request parameter at fault, if any")


class TableInfo(BaseModel):
    table: str
    latest_session: dt.date | None
    row_count: int


class SnapshotInfo(BaseModel):
    id: str
    created_at: dt.datetime | None
    run_id: str | None
    latest_session: dt.date | None = Field(description="Latest session of silver.daily_bars")
    tables: list[TableInfo]


class Freshness(BaseModel):
    exchange: str = "XNYS"
    latest_closed_session: dt.date | None = Field(
        description="The exchange's latest closed session at `checked_at`"
    )
    snapshot_session: dt.date | None
    sessions_behind: int | None = Field(
        description="Closed sessions the snapshot does not have yet (0: up to date)"
    )
    snapshot_age_seconds: float | None


class HealthResponse(BaseModel):
    status: Literal["ok", "stale", "no_snapshot"]
    checked_at: dt.datetime
    snapshot: SnapshotInfo | None
    freshness: Freshness | None


class Symbol(BaseModel):
    ticker: str
    name: str | None = None
    exchange: str | None = None
    currency: str | None = None
    quote_type: str | None = None
    sector: str | None = None
    industry: str | None = None
    in_universe: bool | None = None


class SymbolsResponse(BaseModel):
    data: list[Symbol]
    snapshot: str
    next_cursor: str | None = NextCursor


class SymbolResponse(BaseModel):
    data: Symbol
    snapshot: str


class LatestPrice(BaseModel):
    ticker: str
    session_date: dt.date
    open: float | None
    high: float | None
    low: float | None
    close: float | None
    volume: int | None
    adj_close: float | None
    return_1d: float | None


class LatestPricesResponse(BaseModel):
    data: list[LatestPrice]
    snapshot: str
    next_cursor: str | None = NextCursor


class Bar(BaseModel):
    """Daily bars carry `dividend` and `split_ratio`; one-minute bars carry `ts` (bar start,
    UTC). Adjusted daily bars are back-adjusted for splits and dividends (`adj_*` of
    silver.daily_bars; volume split-adjusted)."""

    ticker: str
    session_date: dt.date
    ts: dt.datetime | None = None
    open: float | None
    high: float | None
    low: float | None
    close: float | None
    volume: float | None
    dividend: float | None = None
    split_ratio: float | None = None


class BarsResponse(BaseModel):
    data: list[Bar]
    snapshot: str
    next_cursor: str | None = NextCursor
    ticker: str
    interval: Literal["1d", "1m"]
    adjusted: bool


class FeatureRow(BaseModel):
    """A gold.daily_features row; only the requested `fields` are present."""

    ticker: str
    session_date: dt.date
    adj_open: float | None = None
    adj_high: float | None = None
    adj_low: float | None = None
    adj_close: float | None = None
    adj_volume: float | None = None
    return_1d: float | None = None
    log_return_1d: float | None = None
    sma_20: float | None = None
    sma_50: float | None = None
    sma_200: float | None = None
    ema_12: float | None = None
    ema_26: float | None = None
    macd: float | None = None
    macd_signal: float | None = None
    macd_hist: float | None = None
    rsi_14: float | None = None
    bb_upper_20: float | None = None
    bb_middle_20: float | None = None
    bb_lower_20: float | None = None
    atr_14: float | None = None
    volatility_20d: float | None = None
    dollar_volume: float | None = None
    high_52w: float | None = None
    low_52w: float | None = None


class FeaturesResponse(BaseModel):
    data: list[FeatureRow]
    snapshot: str
    next_cursor: str | None = NextCursor


class FinancialFact(BaseModel):
    ticker: str
    statement: str
    period_type: str
    period_end: dt.date
    line_item: str
    value: float | None = None
    currency: str | None = None
    # Dates or timestamps, as the fundamentals tables store them.
    known_at: dt.datetime | dt.date | None = None
    first_seen_at: dt.datetime | dt.date | None = None
    superseded_at: dt.datetime | dt.date | None = None


class FundamentalRatios(BaseModel):
    """The gold.fundamentals_daily row of the latest session on or before `as_of`."""

    ticker: str
    session_date: dt.date
    shares_outstanding: float | None = None
    market_cap: float | None = None
    pe_ttm: float | None = None
    pb: float | None = None
    ps_ttm: float | None = None
    ev_ebitda_ttm: float | None = None
    roe_ttm: float | None = None
    roa_ttm: float | None = None
    gross_margin_ttm: float | None = None
    operating_margin_ttm: float | None = None
    net_margin_ttm: float | None = None
    debt_to_equity: float | None = None
    current_ratio: float | None = None
    fcf_ttm: float | None = None
    fcf_yield: float | None = None
    dividend_yield_ttm: float | None = None
    latest_period_end: dt.date | None = None
    latest_known_at: dt.datetime | dt.date | None = None


class FundamentalsResponse(BaseModel):
    data: list[FinancialFact] = Field(
        description="Point-in-time facts (known on `as_of`, not superseded as of it), latest "
        "periods first"
    )
    ratios: FundamentalRatios | None
    as_of: dt.date
    snapshot: str
    next_cursor: str | None = NextCursor


class SectorDay(BaseModel):
    sector: str | None
    mic: str | None = None  # one row per sector and exchange: never mixes currencies
    currency: str | None = None
    session_date: dt.date
    tickers: int | None = None
    avg_return_1d: float | None = None
    advancers: int | None = None
    decliners: int | None = None
    share_above_sma_200: float | None = None
    avg_rsi_14: float | None = None
    total_dollar_volume: float | None = None


class SectorsResponse(BaseModel):
    data: list[SectorDay]
    snapshot: str
    next_cursor: str | None = NextCursor


class CorporateAction(BaseModel):
    ticker: str
    ex_date: dt.date
    dividend: float | None = None
    split_ratio: float | None = None
    dividend_factor: float | None = None
    first_seen_at: dt.datetime | None = None
    last_seen_at: dt.datetime | None = None
    source: str | None = None


class CorporateActionsResponse(BaseModel):
    data: list[CorporateAction]
    snapshot: str
    next_cursor: str | None = NextCursor
