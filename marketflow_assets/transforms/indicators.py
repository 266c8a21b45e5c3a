"""Daily technical indicators on adjusted prices: the kernel behind `gold.daily_features`.

`daily_features(panel)` takes a panel of many tickers sorted by (ticker, session_date) and calls
TA-Lib on each ticker's slice of contiguous numpy arrays (found from the ticker boundaries, no
pandas groupby), writing into one preallocated float block; returns and dollar volume are
vectorised over the whole panel. Every indicator is TA-Lib's default (non-Metastock) definition,
NaN exactly where TA-Lib leaves its warm-up as NaN.

Beyond the TA-Lib calls themselves, the kernel's cost is memory traffic (copying TA-Lib's
outputs into the block, and the OS zeroing the block's fresh pages), so nothing else touches the
panel row by row: no Python string comparison per row, no pandas copy of the key columns.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import talib

from marketflow_assets.contracts.gold import DAILY_FEATURES

LOOKBACK_SESSIONS = 800
"""Sessions read before a run's first session so its rows equal a full-history computation.

Windowed indicators need at most 251 earlier rows (MAX/MIN over 252, SMA 200). Recursive ones
(EMA 12/26, MACD 12/26/9, RSI 14 and ATR 14 with Wilder smoothing) never forget their seed
entirely, but the seed's weight decays geometrically; the slowest is Wilder's (13/14)^k. After
800 sessions less the longest warm-up (33 for MACD) it is (13/14)^767 ~ 2e-25, far below the
1e-16 resolution of a double, so the values equal full-history TA-Lib up to rounding (the
running sums TA-Lib keeps for SMA and standard deviations differ only in their last bits).
Calendar sessions, not ticker rows: a ticker with missing bars has fewer rows in the window,
which still covers the windowed indicators unless more than 500 of its 800 bars are missing.
"""

PRICE_COLUMNS = ("adj_open", "adj_high", "adj_low", "adj_close", "adj_volume")
PANEL_COLUMNS = ("ticker", "session_date", *PRICE_COLUMNS, "close", "volume")
FEATURE_COLUMNS = tuple(DAILY_FEATURES.column_names[2:])  # every DOUBLE column, contract order
_ROW = {name: i for i, name in enumerate(FEATURE_COLUMNS)}
TALIB_INDICATORS = (
    "sma_20",
    "sma_50",
    "sma_200",
    "ema_12",
    "ema_26",
    "macd",
    "macd_signal",
    "macd_hist",
    "rsi_14",
    "bb_upper_20",
    "bb_middle_20",
    "bb_lower_20",
    "atr_14",
    "volatility_20d",
    "high_52w",
    "low_52w",
)
"""The feature columns computed by TA-Lib calls, in the order the kernel (and the bench's
hand-written floor) computes them."""
_TALIB_ROWS = [_ROW[name] for name in TALIB_INDICATORS]
# Sample (n - 1) instead of TA-Lib's population (n) standard deviation, annualised.
_VOLATILITY_SCALE = np.sqrt(20 / 19) * np.sqrt(252)


_BOUNDS_STRIDE = 64  # rows per window of `ticker_bounds`' coarse pass


def ticker_bounds(tickers: np.ndarray) -> np.ndarray:
    """[0, start of 2nd ticker, ..., len]: slice i is bounds[i]:bounds[i + 1].

    `tickers` is grouped (each ticker's rows contiguous, as the panel's sort makes them), so a
    ticker can only change inside a window of `_BOUNDS_STRIDE` rows whose first and last rows
    differ. Comparing those ends, then every row of the few differing windows only, skips
    almost all of the Python string comparisons (~6 ns each) of a row-by-row scan."""
    n = len(tickers)
    window_first = tickers[::_BOUNDS_STRIDE]
    window_last = np.concatenate((window_first[1:], tickers[-1:]))  # next window's first row
    first_rows = np.flatnonzero(window_first != window_last) * _BOUNDS_STRIDE
    rows = (first_rows[:, None] + np.arange(_BOUNDS_STRIDE)).ravel()
    rows = rows[rows < n - 1]  # row i is compared with row i + 1
    changes = rows[tickers[rows + 1] != tickers[rows]] + 1
    return np.concatenate(([0], changes, [n]) if n else ([0],))


def _talib_indicators(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, log_return: np.ndarray
) -> tuple[np.ndarray, ...]:
    """One ticker's TA-Lib outputs, in `_TALIB_ROWS` order."""
    return (
        talib.SMA(close, 20),
        talib.SMA(close, 50),
        talib.SMA(close, 200),
        talib.EMA(close, 12),
        talib.EMA(close, 26),
        *talib.MACD(close, 12, 26, 9),
        talib.RSI(close, 14),
        *talib.BBANDS(close, 20, 2.0, 2.0, talib.MA_Type.SMA),
        talib.ATR(high, low, close, 14),
        # The wrapper skips the leading NaN (the first row has no return): 20 returns -> row 20.
        # Like BBANDS, TA-Lib reports 0 for a variance below 1e-14 (a flat price).
        talib.STDDEV(log_return, 20, 1.0) * _VOLATILITY_SCALE,
        talib.MAX(high, 252),
        talib.MIN(low, 252),
    )


def daily_features(panel: pd.DataFrame) -> pd.DataFrame:
    """`gold.daily_features` rows for every row of `panel`.

    `panel` has `PANEL_COLUMNS` (adjusted OHLCV plus the traded close and volume), sorted by
    ticker then session_date, each ticker's rows being its whole history or a window of it
    (see `LOOKBACK_SESSIONS`).

    The result shares no memory with `panel` and keeps its 24 features in one 2-D float64 block:
    passing the panel's own price arrays through would save a few copies but needs a frame of one
    block per column, which doubles the cost of every row selection downstream. `pd.concat` joins
    the keys to the block without copying either (`DataFrame.insert` copies the inserted column);
    the ticker column repeats each ticker's first value, cheaper than copying 1M+ references to
    distinct strings."""
    n = len(panel)
    block = np.empty((len(FEATURE_COLUMNS), n))  # every cell is written below
    for name in PRICE_COLUMNS:
        block[_ROW[name]] = panel[name].to_numpy(np.float64)
    high, low, close = (block[_ROW[name]] for name in ("adj_high", "adj_low", "adj_close"))
    tickers = panel["ticker"].to_numpy()
    bounds = ticker_bounds(tickers)

    ratio = block[_ROW["return_1d"]]
    np.divide(close[1:], close[:-1], out=ratio[1:])
    ratio[bounds[:-1]] = np.nan  # a ticker's first row has no previous close
    log_return = block[_ROW["log_return_1d"]]
    np.log(ratio, out=log_return)
    ratio -= 1.0
    traded_close, traded_volume = (panel[name].to_numpy(np.float64) for name in ("close", "volume"))
    np.multiply(traded_close, traded_volume, out=block[_ROW["dollar_volume"]])

    for lo, hi in itertools.pairwise(bounds):
        outputs = _talib_indicators(high[lo:hi], low[lo:hi], close[lo:hi], log_return[lo:hi])
        for row, values in zip(_TALIB_ROWS, outputs, strict=True):
            block[row, lo:hi] = values

    keys = pd.DataFrame(
        {
            "ticker": np.repeat(tickers[bounds[:-1]], np.diff(bounds)),
            "session_date": panel["session_date"].to_numpy(copy=True),
        },
        copy=False,
    )
    values = pd.DataFrame(block.T, columns=list(FEATURE_COLUMNS), copy=False)
    return pd.concat([keys, values], axis=1, copy=False)


def ma_crossovers(
    features: pd.DataFrame, fast: str = "sma_50", slow: str = "sma_200"
) -> pd.DataFrame:
    """Sessions where `fast` crosses `slow`: 'golden' (crosses above) or 'death' (below).

    `features` is sorted by ticker then session_date; a cross needs both averages set on the
    session and on the ticker's previous row."""
    spread = features[fast] - features[slow]
    previous = spread.shift().where(features["ticker"].eq(features["ticker"].shift()))
    golden = (previous <= 0) & (spread > 0)
    death = (previous >= 0) & (spread < 0)
    crosses = features.loc[golden | death, ["ticker", "session_date", fast, slow]]
    return crosses.assign(cross=np.where(golden[golden | death], "golden", "death"))
