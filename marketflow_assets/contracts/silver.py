"""Silver contracts: clean, deduplicated, session-aligned, corporate-action adjusted."""

from __future__ import annotations

import pandera.pandas as pa

from marketflow_assets.contracts.model import Col, TableContract

POSITIVE = pa.Check.gt(0, error="positive")
NON_NEGATIVE = pa.Check.ge(0, error="non-negative")
BAR_REJECTION_REASONS = (
    "missing_value",
    "non_session_date",
    "outside_session_hours",
    "non_positive_price",
    "negative_volume",
    "high_below_low",
    "open_outside_range",
    "close_outside_range",
    "duplicate",
    "conflicting_duplicate",
    "non_finite_value",
    "price_out_of_range",
    "fractional_volume",
    "volume_out_of_range",
    "unexplained_price_spike",
)
REPAIR_KINDS = (
    "range_widened",
    "unit_100x",
    "split_unapplied",
    "adj_close_recomputed",
    "dividend_unit",
    "dividend_duplicate",
    "dividend_date",
    "dividend_unpriced",
)


def _ohlc_consistent(prefix: str) -> pa.Check:
    o, h, lo, c = (f"{prefix}{x}" for x in ("open", "high", "low", "close"))
    return pa.Check(
        lambda df: (
            (df[lo] <= df[h] * (1 + 1e-9))
            & df[o].between(df[lo] * (1 - 1e-9), df[h] * (1 + 1e-9))
            & df[c].between(df[lo] * (1 - 1e-9), df[h] * (1 + 1e-9))
        ),
        name=f"{prefix}ohlc_consistent",
        error=f"{prefix}low <= {prefix}open, {prefix}close <= {prefix}high",
    )


DAILY_BARS = TableContract(
    table="silver.daily_bars",
    description=(
        "One row per ticker and NYSE session: traded (as-of-the-day) OHLCV reconstructed from the "
        "provider's as-of numbers, and OHLCV back-adjusted for splits and dividends to the latest "
        "basis (CRSP style). Identical whatever the fetch history was."
    ),
    columns=(
        Col("ticker", "VARCHAR", "Yahoo symbol."),
        Col("session_date", "DATE", "NYSE session."),
        Col("open", "DOUBLE", "Open as traded that day (unadjusted).", checks=(POSITIVE,)),
        Col("high", "DOUBLE", "High as traded.", checks=(POSITIVE,)),
        Col("low", "DOUBLE", "Low as traded.", checks=(POSITIVE,)),
        Col("close", "DOUBLE", "Close as traded.", checks=(POSITIVE,)),
        Col("volume", "BIGINT", "Shares traded that day.", checks=(NON_NEGATIVE,)),
        Col(
            "adj_open",
            "DOUBLE",
            "Open back-adjusted for later splits and dividends.",
            checks=(POSITIVE,),
        ),
        Col("adj_high", "DOUBLE", "High, back-adjusted.", checks=(POSITIVE,)),
        Col("adj_low", "DOUBLE", "Low, back-adjusted.", checks=(POSITIVE,)),
        Col(
            "adj_close",
            "DOUBLE",
            "Close, back-adjusted; reproduces the provider's Adj Close.",
            checks=(POSITIVE,),
        ),
        Col(
            "adj_volume",
            "DOUBLE",
            "Volume in latest-basis shares (times later split ratios).",
            checks=(NON_NEGATIVE,),
        ),
        Col(
            "dividend",
            "DOUBLE",
            "Cash dividend per share as paid, on its ex-date; 0 otherwise.",
            checks=(NON_NEGATIVE,),
        ),
        Col(
            "split_ratio",
            "DOUBLE",
            "Split ratio on its ex-date (4.0 = 4-for-1); 1 otherwise.",
            checks=(POSITIVE,),
        ),
        Col("source", "VARCHAR", "Source that served the bar."),
        Col("fetched_at", "TIMESTAMPTZ", "Provider clock of the fetch this bar came from (UTC)."),
        Col(
            "repair_reason",
            "VARCHAR",
            "Repair kinds applied to this bar, comma-separated (silver.bar_repairs has the "
            "before and after); NULL if served as the provider sent it.",
            nullable=True,
        ),
    ),
    key=("ticker", "session_date"),
    frame_checks=(_ohlc_consistent(""), _ohlc_consistent("adj_")),
)

BAR_REPAIRS = TableContract(
    table="silver.bar_repairs",
    description=(
        "Every daily bar silver repaired instead of rejecting: which repair, by what factor, "
        "why, and the values before (as in bronze, provider as-of basis) and after. Written "
        "with silver.daily_bars by the same validation."
    ),
    columns=(
        Col("ticker", "VARCHAR", "Yahoo symbol."),
        Col("session_date", "DATE", "Session of the bar."),
        Col("kind", "VARCHAR", "Repair kind(s), comma-separated (README, 'Repairs')."),
        Col("factor", "DOUBLE", "Factor the prices were divided by (1 for range widening)."),
        Col("detail", "VARCHAR", "What changed.", nullable=True),
        Col("original_open", "DOUBLE", "Open before the repair."),
        Col("original_high", "DOUBLE", "High before the repair."),
        Col("original_low", "DOUBLE", "Low before the repair."),
        Col("original_close", "DOUBLE", "Close before the repair."),
        Col("original_volume", "DOUBLE", "Volume before the repair."),
        Col("open", "DOUBLE", "Open after the repair."),
        Col("high", "DOUBLE", "High after the repair."),
        Col("low", "DOUBLE", "Low after the repair."),
        Col("close", "DOUBLE", "Close after the repair."),
        Col("volume", "DOUBLE", "Volume after the repair."),
        Col("source", "VARCHAR", "Source of the bar."),
        Col("fetch_id", "VARCHAR", "Raw fetch of the bar."),
        Col("raw_object", "VARCHAR", "Raw object with the untouched payload row."),
    ),
    key=("ticker", "session_date"),
)

REJECTED_BARS = TableContract(
    table="silver.rejected_bars",
    description=(
        "Bronze rows silver did not accept, intact, with a reason code and detail. Bronze rows "
        "= silver rows + rejected rows, per partition."
    ),
    columns=(
        Col("ticker", "VARCHAR", "Yahoo symbol."),
        Col("session_date", "DATE", "Session partition of the row."),
        Col("interval", "VARCHAR", "'1d' or '1m'."),
        Col("ts", "TIMESTAMPTZ", "Bar timestamp (UTC)."),
        Col("bar_date", "DATE", "Bar date in exchange time."),
        Col("reason", "VARCHAR", "Reason code.", checks=(pa.Check.isin(BAR_REJECTION_REASONS),)),
        Col("detail", "VARCHAR", "What exactly was wrong.", nullable=True),
        Col("open", "DOUBLE", "Open as in bronze.", nullable=True),
        Col("high", "DOUBLE", "High as in bronze.", nullable=True),
        Col("low", "DOUBLE", "Low as in bronze.", nullable=True),
        Col("close", "DOUBLE", "Close as in bronze.", nullable=True),
        Col("adj_close", "DOUBLE", "Provider Adj Close as in bronze (daily only).", nullable=True),
        Col("volume", "DOUBLE", "Volume as in bronze.", nullable=True),
        Col("source", "VARCHAR", "Source of the row."),
        Col("fetch_id", "VARCHAR", "Raw fetch of the row."),
        Col("fetched_at", "TIMESTAMPTZ", "Provider clock of that fetch."),
        Col("raw_object", "VARCHAR", "Raw object with the untouched payload row."),
    ),
    key=("ticker", "session_date", "interval", "ts"),
    key_unique=False,
)

CORPORATE_ACTIONS = TableContract(
    table="silver.corporate_actions",
    description=(
        "Splits and dividends per ticker and ex-date, from every fetch's payload; what silver "
        "uses to reconstruct traded prices and to back-adjust."
    ),
    columns=(
        Col("ticker", "VARCHAR", "Yahoo symbol."),
        Col("ex_date", "DATE", "Ex-date (an NYSE session)."),
        Col(
            "dividend",
            "DOUBLE",
            "Cash dividend per share as paid (traded basis); 0 if none.",
            checks=(NON_NEGATIVE,),
        ),
        Col(
            "split_ratio",
            "DOUBLE",
            "Split ratio (new shares per old); 1 if none.",
            checks=(POSITIVE,),
        ),
        Col(
            "dividend_factor",
            "DOUBLE",
            "1 - dividend / previous close: the CRSP factor applied to prices before the ex-date.",
            checks=(pa.Check.in_range(0, 1, include_min=False),),
        ),
        Col("first_seen_at", "TIMESTAMPTZ", "Provider clock of the first fetch that reported it."),
        Col("last_seen_at", "TIMESTAMPTZ", "Provider clock of the latest fetch that reported it."),
        Col("source", "VARCHAR", "Source that reported it."),
        Col(
            "original_dividend",
            "DOUBLE",
            "The dividend as the provider reported it, where silver corrected it.",
            nullable=True,
        ),
        Col(
            "repair_reason",
            "VARCHAR",
            "dividend_unit or dividend_duplicate where corrected; NULL otherwise.",
            nullable=True,
        ),
        Col("repair_detail", "VARCHAR", "The evidence for the correction.", nullable=True),
    ),
    key=("ticker", "ex_date"),
    partition_column=None,
)

SYMBOLS = TableContract(
    table="silver.symbols",
    description="One row per ticker of the universe with its reference data.",
    columns=(
        Col("ticker", "VARCHAR", "Yahoo symbol."),
        Col("name", "VARCHAR", "Company or index name.", nullable=True),
        Col("exchange", "VARCHAR", "Exchange code.", nullable=True),
        Col(
            "currency",
            "VARCHAR",
            "ISO 4217 currency of the listing (GBP for London).",
            nullable=True,
        ),
        Col("quote_type", "VARCHAR", "EQUITY, INDEX, ETF, ...", nullable=True),
        Col("sector", "VARCHAR", "Sector; NULL for indices and funds.", nullable=True),
        Col("industry", "VARCHAR", "Industry; NULL for indices and funds.", nullable=True),
        Col("in_universe", "BOOLEAN", "Whether the ticker is in the current universe."),
        Col("source", "VARCHAR", "Source of the profile."),
        Col("updated_at", "TIMESTAMPTZ", "Provider clock of the profile fetch."),
        Col(
            "mic",
            "VARCHAR",
            "ISO 10383 MIC of the exchange whose sessions the ticker is aligned to (from the "
            "Yahoo suffix; XNYS for US listings); NULL for an unknown suffix.",
            nullable=True,
        ),
        Col(
            "price_unit",
            "VARCHAR",
            "Unit prices are quoted in: the currency, or its subunit (GBp pence, ZAc cents, ILA "
            "agorot). Compare across tickers only after dividing by the subunit.",
            nullable=True,
        ),
    ),
    key=("ticker",),
    partition_column=None,
)

INTRADAY_BARS_1M = TableContract(
    table="silver.intraday_bars_1m",
    description=(
        "One-minute bars inside the regular hours of each ticker's own exchange (exchange_calendars: "
        "open to close, early closes included, lunch breaks excluded: XTKS, XHKG), UTC minute "
        "starts, one row per ticker and minute, traded basis."
    ),
    columns=(
        Col("ticker", "VARCHAR", "Yahoo symbol."),
        Col("session_date", "DATE", "Session of the ticker's own exchange the minute belongs to."),
        Col("ts", "TIMESTAMPTZ", "Minute start, UTC."),
        Col("open", "DOUBLE", "Open of the minute.", checks=(POSITIVE,)),
        Col("high", "DOUBLE", "High of the minute.", checks=(POSITIVE,)),
        Col("low", "DOUBLE", "Low of the minute.", checks=(POSITIVE,)),
        Col("close", "DOUBLE", "Close of the minute.", checks=(POSITIVE,)),
        Col("volume", "BIGINT", "Shares traded in the minute.", checks=(NON_NEGATIVE,)),
        Col("source", "VARCHAR", "Source that served the bar."),
        Col("fetched_at", "TIMESTAMPTZ", "Provider clock of the fetch the bar came from (UTC)."),
    ),
    key=("ticker", "ts"),
    frame_checks=(_ohlc_consistent(""),),
)

SESSION_HOURS = TableContract(
    table="silver.session_hours",
    description=(
        "Regular trading hours of each universe ticker's own exchange, one row per ticker and "
        "session of that exchange (exchange_calendars): open, close, lunch break, in UTC. What "
        "the one-minute path judges and buckets minutes against (gold.hourly_bars)."
    ),
    columns=(
        Col("ticker", "VARCHAR", "Yahoo symbol."),
        Col("session_date", "DATE", "Session of the ticker's own exchange."),
        Col("mic", "VARCHAR", "ISO 10383 MIC of the ticker's exchange (by its Yahoo suffix)."),
        Col("timezone", "VARCHAR", "IANA time zone of the exchange."),
        Col("open_utc", "TIMESTAMPTZ", "Regular open (UTC)."),
        Col("close_utc", "TIMESTAMPTZ", "Regular close (UTC), early closes included."),
        Col(
            "break_start_utc",
            "TIMESTAMPTZ",
            "Start of the lunch break (UTC); NULL without one.",
            nullable=True,
        ),
        Col(
            "break_end_utc",
            "TIMESTAMPTZ",
            "End of the lunch break (UTC); NULL without one.",
            nullable=True,
        ),
        Col(
            "minutes",
            "BIGINT",
            "Regular-hours one-minute bars of the session (lunch break excluded).",
            checks=(POSITIVE,),
        ),
    ),
    key=("ticker", "session_date"),
)
