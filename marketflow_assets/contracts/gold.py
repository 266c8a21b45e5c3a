"""Gold contracts: analytics-ready features computed in Python (TA-Lib definitions)."""

from __future__ import annotations

import itertools

import pandera.pandas as pa

from marketflow_assets.contracts.model import Col, TableContract

POSITIVE = pa.Check.gt(0, error="positive")
NON_NEGATIVE = pa.Check.ge(0, error="non-negative")
PERCENT = pa.Check.in_range(0, 100, error="in [0, 100]")
ABOVE_MINUS_ONE = pa.Check.gt(-1, error="greater than -1 (a price cannot fall below 0)")
WARMUP = "NULL while TA-Lib's warm-up leaves it NaN"


def _ordered(*names: str) -> pa.Check:
    """names[0] <= names[1] <= ... on every row where all of them are set."""

    def check(df):
        ok = True
        for lo, hi in itertools.pairwise(names):
            ok = ok & ~(df[lo] > df[hi])  # a comparison with NULL is False: passes
        return ok

    return pa.Check(check, name="_".join(names) + "_ordered", error=" <= ".join(names))


def _price(name: str, description: str) -> Col:
    return Col(name, "DOUBLE", description, nullable=True, checks=(POSITIVE,))


DAILY_FEATURES = TableContract(
    table="gold.daily_features",
    description=(
        "One row per ticker and NYSE session: silver's adjusted OHLCV plus daily returns and "
        "technical indicators with TA-Lib's default (non-Metastock) definitions on adjusted "
        "prices, NULL exactly where TA-Lib leaves its warm-up as NaN. Each row equals TA-Lib run "
        "over the ticker's full history, however the partitions were built."
    ),
    columns=(
        Col("ticker", "VARCHAR", "Yahoo symbol."),
        Col("session_date", "DATE", "NYSE session."),
        Col("adj_open", "DOUBLE", "Open, back-adjusted (silver).", checks=(POSITIVE,)),
        Col("adj_high", "DOUBLE", "High, back-adjusted (silver).", checks=(POSITIVE,)),
        Col("adj_low", "DOUBLE", "Low, back-adjusted (silver).", checks=(POSITIVE,)),
        Col("adj_close", "DOUBLE", "Close, back-adjusted (silver).", checks=(POSITIVE,)),
        Col(
            "adj_volume",
            "DOUBLE",
            "Volume in latest-basis shares (silver).",
            checks=(NON_NEGATIVE,),
        ),
        Col(
            "return_1d",
            "DOUBLE",
            "adj_close / previous session's adj_close - 1; NULL on the ticker's first row.",
            nullable=True,
            checks=(ABOVE_MINUS_ONE,),
        ),
        Col(
            "log_return_1d",
            "DOUBLE",
            "ln(adj_close / previous adj_close); NULL on the ticker's first row.",
            nullable=True,
        ),
        _price("sma_20", f"TA-Lib SMA(adj_close, 20); {WARMUP} (19 rows)."),
        _price("sma_50", f"TA-Lib SMA(adj_close, 50); {WARMUP} (49 rows)."),
        _price("sma_200", f"TA-Lib SMA(adj_close, 200); {WARMUP} (199 rows)."),
        _price(
            "ema_12",
            f"TA-Lib EMA(adj_close, 12), seeded with the SMA of the first 12; {WARMUP} (11 rows).",
        ),
        _price(
            "ema_26",
            f"TA-Lib EMA(adj_close, 26), seeded with the SMA of the first 26; {WARMUP} (25 rows).",
        ),
        Col(
            "macd",
            "DOUBLE",
            "TA-Lib MACD(adj_close, 12, 26, 9) line: EMA 12 - EMA 26 with TA-Lib's aligned seed "
            f"windows (so not exactly ema_12 - ema_26); {WARMUP} (33 rows).",
            nullable=True,
        ),
        Col(
            "macd_signal",
            "DOUBLE",
            f"TA-Lib MACD signal: EMA 9 of the MACD line; {WARMUP} (33 rows).",
            nullable=True,
        ),
        Col(
            "macd_hist",
            "DOUBLE",
            f"TA-Lib MACD histogram: macd - macd_signal; {WARMUP} (33 rows).",
            nullable=True,
        ),
        Col(
            "rsi_14",
            "DOUBLE",
            f"TA-Lib RSI(adj_close, 14), Wilder smoothing seeded by a simple average; {WARMUP} "
            "(14 rows).",
            nullable=True,
            checks=(PERCENT,),
        ),
        _price(
            "bb_upper_20",
            f"TA-Lib BBANDS(adj_close, 20, 2, 2) upper: SMA 20 + 2 population std; {WARMUP}.",
        ),
        _price("bb_middle_20", f"TA-Lib BBANDS middle band: SMA 20 of adj_close; {WARMUP}."),
        Col(
            "bb_lower_20",
            "DOUBLE",
            f"TA-Lib BBANDS lower: SMA 20 - 2 population std (may be negative); {WARMUP}.",
            nullable=True,
        ),
        Col(
            "atr_14",
            "DOUBLE",
            "TA-Lib ATR(adj_high, adj_low, adj_close, 14): Wilder-smoothed true range seeded by "
            f"a simple average; {WARMUP} (14 rows).",
            nullable=True,
            checks=(NON_NEGATIVE,),
        ),
        Col(
            "volatility_20d",
            "DOUBLE",
            "Sample standard deviation of the last 20 log_return_1d x sqrt(252) (annualised); "
            "NULL until 20 log returns exist (the ticker's first 20 rows).",
            nullable=True,
            checks=(NON_NEGATIVE,),
        ),
        Col(
            "dollar_volume",
            "DOUBLE",
            "Traded close x traded volume (silver's unadjusted close and volume): the dollars "
            "that actually changed hands that day.",
            checks=(NON_NEGATIVE,),
        ),
        _price(
            "high_52w",
            f"TA-Lib MAX(adj_high, 252): highest adjusted high of the last 252 sessions; {WARMUP} "
            "(251 rows).",
        ),
        _price(
            "low_52w",
            f"TA-Lib MIN(adj_low, 252): lowest adjusted low of the last 252 sessions; {WARMUP} "
            "(251 rows).",
        ),
    ),
    key=("ticker", "session_date"),
    frame_checks=(
        _ordered("bb_lower_20", "bb_middle_20", "bb_upper_20"),
        _ordered("low_52w", "high_52w"),
    ),
)
