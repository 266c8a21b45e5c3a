"""The floor: the daily raw -> gold data work written by hand with DuckDB and TA-Lib, no Dagster.

It does what the daily history run must do at the least, on the same input (the simulator's
bars for the same universe, window and clock, fetched once as raw does): land the provider's
payload as Parquet (raw), type it into DuckDB (bronze), deduplicate and back-adjust it (silver),
compute the 16 TA-Lib indicators per ticker and store them (gold), build the marts' aggregates
(daily sector breadth, moving-average crossovers, monthly returns) and evaluate key and OHLC
checks in SQL. `make bench` runs it in the same process layout and hour as the Dagster runs and
reports their time as a ratio to it (`daily_history` / `floor`).
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import talib

from marketflow_assets.benchmark.scenarios import RunSpec, symbols
from marketflow_assets.sources.base import BarsQuery
from marketflow_assets.sources.simulator import SimulatorSource
from marketflow_assets.transforms.indicators import TALIB_INDICATORS

INDICATORS = list(TALIB_INDICATORS)


def _indicators(frame: pd.DataFrame) -> pd.DataFrame:
    """TA-Lib's default definitions per ticker on adjusted prices (frame sorted by ticker)."""
    tickers = frame["ticker"].to_numpy()
    bounds = np.flatnonzero(np.r_[True, tickers[1:] != tickers[:-1], True])
    high, low, close = (
        np.ascontiguousarray(frame[c].to_numpy(np.float64))
        for c in ("adj_high", "adj_low", "adj_close")
    )
    out = np.full((len(frame), len(INDICATORS)), np.nan)
    for lo, hi in itertools.pairwise(bounds):
        h, lw, c = high[lo:hi], low[lo:hi], close[lo:hi]
        log_ret = np.r_[np.nan, np.log(c[1:] / c[:-1])]
        macd = talib.MACD(c, 12, 26, 9)
        bb = talib.BBANDS(c, 20, 2.0, 2.0, talib.MA_Type.SMA)
        columns = (
            talib.SMA(c, 20), talib.SMA(c, 50), talib.SMA(c, 200), talib.EMA(c, 12),
            talib.EMA(c, 26), *macd, talib.RSI(c, 14), *bb, talib.ATR(h, lw, c, 14),
            talib.STDDEV(log_ret, 20, 1.0), talib.MAX(h, 252), talib.MIN(lw, 252),
        )  # fmt: skip
        out[lo:hi] = np.column_stack(columns)
    return pd.DataFrame(out, columns=INDICATORS)


def measure(spec: RunSpec) -> dict:
    home = Path(spec.home)
    home.mkdir(parents=True, exist_ok=True)
    first, last = (dt.date.fromisoformat(d) for d in spec.window)
    clock = dt.datetime.fromisoformat(spec.clock)
    steps: dict[str, float] = {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        steps[name] = round(now - t, 3)
        t = now

    source = SimulatorSource(seed=0, clock=clock)
    payload = source.fetch_bars(BarsQuery(tuple(symbols(spec.tickers)), first, last, "1d")).frame
    lap("fetch")
    raw = home / "raw_daily_bars.parquet"
    pq.write_table(pa.Table.from_pandas(payload, preserve_index=False), raw)
    lap("raw")
    con = duckdb.connect(str(home / "floor.duckdb"))
    try:
        con.execute(
            f"""CREATE TABLE bronze AS SELECT "Ticker"::VARCHAR AS ticker,
                CAST("Date" AS DATE) AS session_date, "Open"::DOUBLE AS open,
                "High"::DOUBLE AS high, "Low"::DOUBLE AS low, "Close"::DOUBLE AS close,
                "Adj Close"::DOUBLE AS adj_close_raw, "Volume"::BIGINT AS volume
            FROM read_parquet('{raw}')"""
        )
        lap("bronze")
        con.execute(
            """CREATE TABLE silver AS
            SELECT ticker, session_date, open, high, low, close, volume,
                open * f AS adj_open, high * f AS adj_high, low * f AS adj_low,
                adj_close_raw AS adj_close, volume / f AS adj_volume
            FROM (SELECT *, adj_close_raw / close AS f FROM bronze
                  QUALIFY row_number() OVER (PARTITION BY ticker, session_date) = 1)
            WHERE high >= low AND close > 0
            ORDER BY ticker, session_date"""
        )
        lap("silver")
        frame = con.execute(
            "SELECT ticker, session_date, adj_high, adj_low, adj_close, adj_volume "
            "FROM silver ORDER BY ticker, session_date"
        ).df()
        features = pd.concat([frame, _indicators(frame)], axis=1)
        con.register("_features", features)
        con.execute(
            "CREATE TABLE gold AS SELECT *, adj_close * adj_volume AS dollar_volume, "
            "adj_close / lag(adj_close) OVER w - 1 AS return_1d FROM _features "
            "WINDOW w AS (PARTITION BY ticker ORDER BY session_date)"
        )
        con.unregister("_features")
        lap("gold")
        con.execute(
            """CREATE TABLE sector_daily AS SELECT session_date, count(*) AS tickers,
                count(*) FILTER (WHERE return_1d > 0) AS advancers,
                avg(rsi_14) AS avg_rsi_14, sum(dollar_volume) AS total_dollar_volume,
                avg((adj_close > sma_200)::INT) AS share_above_sma_200
            FROM gold GROUP BY session_date"""
        )
        con.execute(
            """CREATE TABLE ma_crossovers AS SELECT * FROM (
                SELECT ticker, session_date, sma_50 - sma_200 AS spread,
                    lag(sma_50 - sma_200) OVER (PARTITION BY ticker ORDER BY session_date) AS prev
                FROM gold) WHERE sign(spread) <> sign(prev)"""
        )
        con.execute(
            """CREATE TABLE monthly_returns AS SELECT ticker, date_trunc('month', session_date)
                AS month, arg_max(adj_close, session_date) / arg_min(adj_close, session_date) - 1
                AS monthly_return, count(*) AS sessions FROM gold GROUP BY 1, 2"""
        )
        lap("marts")
        failing = con.execute(
            """SELECT (SELECT count(*) FROM (SELECT ticker, session_date FROM silver
                      GROUP BY 1, 2 HAVING count(*) > 1))
                 + (SELECT count(*) FROM silver WHERE NOT (low <= least(open, close)
                      AND greatest(open, close) <= high AND low > 0))"""
        ).fetchall()[0][0]
        lap("checks")
        rows = con.execute("SELECT count(*) FROM gold").fetchall()[0][0]
    finally:
        con.close()
    return {
        "ok": True,
        "run_end": time.time(),
        "rows": {"main": int(rows), "tables": {}},
        "floor": {"steps_s": steps, "total_s": round(sum(steps.values()), 3), "failing": failing},
    }
