"""Gold contracts of the intraday path: session VWAP, daily summary from minutes, anomalies."""

from __future__ import annotations

import pandera.pandas as pa

from marketflow_assets.contracts.model import Col, TableContract

POSITIVE = pa.Check.gt(0, error="positive")
NON_NEGATIVE = pa.Check.ge(0, error="non-negative")

INTRADAY_VWAP = TableContract(
    table="gold.intraday_vwap",
    description=(
        "Session VWAP per ticker and minute: sum(typical price x volume) / sum(volume) from the "
        "session open (of the ticker's own exchange) through the minute, reset at every open. Typical price = "
        "(high + low + close) / 3."
    ),
    columns=(
        Col("ticker", "VARCHAR", "Yahoo symbol."),
        Col("session_date", "DATE", "Session of the ticker's own exchange."),
        Col("ts", "TIMESTAMPTZ", "Minute start, UTC."),
        Col(
            "typical_price", "DOUBLE", "(high + low + close) / 3 of the minute.", checks=(POSITIVE,)
        ),
        Col("volume", "BIGINT", "Shares traded in the minute.", checks=(NON_NEGATIVE,)),
        Col(
            "cum_volume", "BIGINT", "Shares traded since the session open.", checks=(NON_NEGATIVE,)
        ),
        Col(
            "vwap",
            "DOUBLE",
            "Session VWAP through this minute; NULL until volume trades.",
            nullable=True,
            checks=(POSITIVE,),
        ),
    ),
    key=("ticker", "ts"),
)

INTRADAY_DAILY_SUMMARY = TableContract(
    table="gold.intraday_daily_summary",
    description=(
        "Daily OHLCV rebuilt from one-minute bars, with the session VWAP and minute coverage "
        "(expected minutes up to the close, or up to the provider clock while trading). "
        "Reconciled against silver.daily_bars by the quality checks."
    ),
    columns=(
        Col("ticker", "VARCHAR", "Yahoo symbol."),
        Col("session_date", "DATE", "Session of the ticker's own exchange."),
        Col("open", "DOUBLE", "Open of the first minute.", checks=(POSITIVE,)),
        Col("high", "DOUBLE", "Highest minute high.", checks=(POSITIVE,)),
        Col("low", "DOUBLE", "Lowest minute low.", checks=(POSITIVE,)),
        Col("close", "DOUBLE", "Close of the last minute.", checks=(POSITIVE,)),
        Col("volume", "BIGINT", "Sum of minute volumes.", checks=(NON_NEGATIVE,)),
        Col("vwap", "DOUBLE", "Session VWAP (typical price).", nullable=True, checks=(POSITIVE,)),
        Col("minutes_present", "BIGINT", "Minutes with a bar.", checks=(NON_NEGATIVE,)),
        Col(
            "minutes_expected",
            "BIGINT",
            "Regular-hours minutes of the session so far on the ticker's own exchange (lunch "
            "break excluded).",
            checks=(NON_NEGATIVE,),
        ),
        Col("minutes_missing", "BIGINT", "Expected minutes without a bar.", checks=(NON_NEGATIVE,)),
        Col("first_minute", "TIMESTAMPTZ", "First minute with a bar (UTC)."),
        Col("last_minute", "TIMESTAMPTZ", "Last minute with a bar (UTC)."),
    ),
    key=("ticker", "session_date"),
)

INTRADAY_ANOMALIES = TableContract(
    table="gold.intraday_anomalies",
    description=(
        "Minutes whose return or volume is far from the ticker's session norm: robust z-score "
        "(value - median) / (1.4826 x MAD) per ticker, session and metric beyond the threshold. "
        "Returns are log returns minute to minute; volume is log(1 + shares)."
    ),
    columns=(
        Col("ticker", "VARCHAR", "Yahoo symbol."),
        Col("session_date", "DATE", "Session of the ticker's own exchange."),
        Col("ts", "TIMESTAMPTZ", "Minute start, UTC."),
        Col(
            "metric",
            "VARCHAR",
            "'return' or 'volume'.",
            checks=(pa.Check.isin(["return", "volume"]),),
        ),
        Col("value", "DOUBLE", "The minute's value of the metric."),
        Col("median", "DOUBLE", "Median of the metric over the ticker's session."),
        Col("robust_z", "DOUBLE", "Robust z-score of the value."),
        Col(
            "threshold", "DOUBLE", "|robust_z| above which a minute is listed.", checks=(POSITIVE,)
        ),
    ),
    key=("ticker", "ts", "metric"),
)
