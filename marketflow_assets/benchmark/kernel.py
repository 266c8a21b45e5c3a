"""Scenario 4: the `gold/daily_features` kernel alone, beside bare TA-Lib on the same arrays.

The panel is the simulator's adjusted daily bars for the benchmark universe, read back through
DuckDB with the asset's own column order and sort, so it has the dtypes the asset sees. The
reference is the same 16 TA-Lib calls per ticker on contiguous float64 slices: the arithmetic
no implementation can avoid. Both are timed best-of-N (GC collected before each repetition).
"""

from __future__ import annotations

import datetime as dt
import gc
import itertools
import time

import duckdb
import numpy as np
import pandas as pd
import talib

from marketflow_assets.benchmark.profiling import profiled
from marketflow_assets.benchmark.scenarios import RunSpec, last_session, symbols, window
from marketflow_assets.sources.base import BarsQuery
from marketflow_assets.sources.simulator import SimulatorSource
from marketflow_assets.transforms.indicators import PANEL_COLUMNS, daily_features, ticker_bounds


def simulator_panel(tickers: int, sessions: int, clock: dt.datetime) -> pd.DataFrame:
    """`tickers` x `sessions` adjusted bars as the kernel reads them from silver.daily_bars."""
    source = SimulatorSource(seed=0, clock=clock)
    first, last = window(sessions, last_session(clock))
    frame = source.fetch_bars(BarsQuery(tuple(symbols(tickers)), first, last, "1d")).frame
    factor = frame["Adj Close"] / frame["Close"]
    bars = pd.DataFrame(
        {
            "ticker": frame["Ticker"],
            "session_date": frame["Date"].dt.tz_localize(None),
            "adj_open": frame["Open"] * factor,
            "adj_high": frame["High"] * factor,
            "adj_low": frame["Low"] * factor,
            "adj_close": frame["Adj Close"],
            "adj_volume": frame["Volume"].astype("float64"),
            "close": frame["Close"],
            "volume": frame["Volume"],
        }
    )
    con = duckdb.connect()
    try:
        con.register("bars", bars)
        columns = ", ".join(
            "CAST(session_date AS DATE) AS session_date" if c == "session_date" else c
            for c in PANEL_COLUMNS
        )
        return con.execute(f"SELECT {columns} FROM bars ORDER BY ticker, session_date").df()
    finally:
        con.close()


def talib_reference(
    bounds: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, log_ret: np.ndarray
) -> None:
    """The 16 TA-Lib calls of the daily features, per ticker, results discarded."""
    for lo, hi in itertools.pairwise(bounds):
        h, lw, c, r = high[lo:hi], low[lo:hi], close[lo:hi], log_ret[lo:hi]
        talib.SMA(c, 20)
        talib.SMA(c, 50)
        talib.SMA(c, 200)
        talib.EMA(c, 12)
        talib.EMA(c, 26)
        talib.MACD(c, 12, 26, 9)  # macd, signal, hist
        talib.RSI(c, 14)
        talib.BBANDS(c, 20, 2.0, 2.0, talib.MA_Type.SMA)  # upper, middle, lower
        talib.ATR(h, lw, c, 14)
        talib.STDDEV(r, 20, 1.0)
        talib.MAX(h, 252)
        talib.MIN(lw, 252)


def best_of(repeats: int, fn) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), times


def measure(spec: RunSpec) -> dict:
    t0 = time.perf_counter()
    clock = dt.datetime.fromisoformat(spec.clock)
    panel = simulator_panel(spec.tickers, spec.kernel_sessions, clock)
    build_s = time.perf_counter() - t0

    high, low, close = (
        np.ascontiguousarray(panel[c].to_numpy(np.float64))
        for c in ("adj_high", "adj_low", "adj_close")
    )
    bounds = ticker_bounds(panel["ticker"].to_numpy())
    log_ret = np.empty_like(close)
    log_ret[1:] = np.log(close[1:] / close[:-1])
    log_ret[bounds[:-1]] = np.nan

    with profiled(spec.profile):
        kernel_s, kernel_times = best_of(spec.kernel_repeats, lambda: daily_features(panel))
        talib_s, talib_times = best_of(
            spec.kernel_repeats, lambda: talib_reference(bounds, high, low, close, log_ret)
        )
    rows = len(panel)
    return {
        "ok": True,
        "run_end": time.time(),
        "rows": {"main": rows, "tables": {}},
        "timing": {"panel_build_s": round(build_s, 3)},
        "kernel": {
            "tickers": int(len(bounds) - 1),
            "rows": rows,
            "repeats": spec.kernel_repeats,
            "kernel_best_s": round(kernel_s, 4),
            "talib_best_s": round(talib_s, 4),
            "ratio": round(kernel_s / talib_s, 2) if talib_s else None,
            "kernel_times_s": [round(t, 4) for t in kernel_times],
            "talib_times_s": [round(t, 4) for t in talib_times],
        },
    }
