"""Snapshot publish at history scale without the rest of the graph:
`python -m marketflow_assets.benchmark.publish_scale [--tickers 500] [--sessions 2520] [--out F]`.

Builds a synthetic warehouse (random values, the contracts' columns) with the tables the real
graph serves, at the sizes the full-size `serving` scenario measured for 500 tickers x 2,520
sessions, written the way the real writers write them: through the shared writer (journaled)
`silver.daily_bars`, `gold.daily_features`, `gold.fundamentals_daily` (the last third of the
sessions) by session, and the reference tables `silver.symbols`, `silver.corporate_actions`
(~30 rows per ticker) and `silver.financial_facts` (~200 per ticker) whole; the dbt marts
(`gold.sector_daily`, `gold.sector_fundamentals_daily`, `gold.monthly_returns`,
`gold.ma_crossovers`) and `ops.check_results` by SQL, covered by fingerprints. The next
session then changes what a real daily run changes: one session of the session tables, the
reference tables rewritten whole (symbols identical, corporate actions of 3% of the tickers,
a sixth of the financial facts superseded plus new ones), the marts' new rows and every
ticker's current month of returns, new check results. Measured in one process, so the
figures compare as ratios: the publish from scratch; the increment's publish (per step, per
table, per Parquet table); a publish with nothing changed; and two baselines on the same
snapshot file: a plain `cp` of it and DuckDB's `SELECT 1` round trip.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from marketflow_assets.calendar import xnys
from marketflow_assets.contracts import CONTRACTS
from marketflow_assets.serving.parquet_copy import ParquetCopy
from marketflow_assets.serving.publish import publish_snapshot
from marketflow_assets.storage.warehouse import TableWrite, write_table

SESSION_TABLES = ("silver.daily_bars", "gold.daily_features")
FUNDAMENTALS = "gold.fundamentals_daily"
LAST = dt.date(2026, 11, 25)
REFERENCE = {  # table -> dates per ticker (the DATE columns take them): real-run row counts
    "silver.symbols": 1,
    "silver.corporate_actions": 30,
    "silver.financial_facts": 200,
}


def synthetic(name: str, tickers: list[str], days: list[dt.date], seed: int) -> pd.DataFrame:
    """Random rows with the contract's columns for every (ticker, session)."""
    rng = np.random.default_rng(seed)
    grid = pd.MultiIndex.from_product([tickers, days], names=["ticker", "d"]).to_frame(index=False)
    n = len(grid)
    frame = pd.DataFrame(index=grid.index)
    for column in CONTRACTS[name].columns:
        kind = column.sql_type
        if column.name == "ticker":
            frame[column.name] = grid["ticker"]
        elif kind == "DATE":
            frame[column.name] = grid["d"]
        elif kind == "TIMESTAMPTZ":
            frame[column.name] = pd.Timestamp("2026-11-26", tz="UTC")
        elif kind == "DOUBLE":
            frame[column.name] = rng.uniform(10, 500, n)
        elif kind in ("BIGINT", "INTEGER"):
            frame[column.name] = rng.integers(1_000, 10_000_000, n)
        elif kind == "BOOLEAN":
            frame[column.name] = rng.random(n) < 0.5
        else:
            frame[column.name] = "sim"
    return frame


def _date(value) -> dt.date:
    return value.date() if hasattr(value, "date") and callable(value.date) else value


def _write(con, name: str, tickers: list[str], days: list[dt.date], seed: int) -> None:
    step = 250  # sessions per batch: bounded memory
    batches = (
        synthetic(name, tickers, days[i : i + step], seed + i) for i in range(0, len(days), step)
    )
    write_table(con, CONTRACTS[name], TableWrite(batches), (days[0], days[-1]), run_id="bench")


def _timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def _reference(name: str, tickers: list[str], last: dt.date, seed: int) -> pd.DataFrame:
    days = [last - dt.timedelta(days=91 * i) for i in range(REFERENCE[name])]
    return synthetic(name, tickers, days, seed)


def _write_whole(con, name: str, frame: pd.DataFrame) -> None:
    write_table(con, CONTRACTS[name], TableWrite(frame), None, run_id="bench")


MARTS_SQL = """
CREATE TABLE gold.sector_daily AS SELECT session_date, 'S' || (hash(ticker) % 11) AS sector,
    count(*) AS n, avg(close) AS avg_close, sum(volume) AS volume
FROM silver.daily_bars GROUP BY ALL;
CREATE TABLE gold.sector_fundamentals_daily AS SELECT session_date,
    'S' || (hash(ticker) % 11) AS sector, median(pe_ttm) AS pe, median(market_cap) AS cap
FROM gold.fundamentals_daily GROUP BY ALL;
CREATE TABLE gold.monthly_returns AS SELECT ticker, CAST(date_trunc('month', session_date) AS DATE)
    AS month, last(close ORDER BY session_date) / first(open ORDER BY session_date) - 1 AS ret
FROM silver.daily_bars GROUP BY ALL;
CREATE TABLE gold.ma_crossovers AS SELECT ticker, session_date, 'golden' AS kind, sma_50, sma_200
FROM gold.daily_features WHERE hash(ticker, session_date) % 170 = 0;
"""
MARTS_INCREMENT_SQL = """
INSERT INTO gold.sector_daily SELECT session_date, 'S' || (hash(ticker) % 11), count(*),
    avg(close), sum(volume) FROM silver.daily_bars WHERE session_date = $day GROUP BY ALL;
INSERT INTO gold.sector_fundamentals_daily SELECT session_date, 'S' || (hash(ticker) % 11),
    median(pe_ttm), median(market_cap) FROM gold.fundamentals_daily WHERE session_date = $day
    GROUP BY ALL;
UPDATE gold.monthly_returns SET ret = ret + 0.001 WHERE month = date_trunc('month', $day);
INSERT INTO gold.ma_crossovers SELECT ticker, session_date, 'death', sma_50, sma_200
FROM gold.daily_features WHERE session_date = $day LIMIT 3;
"""


def _check_results(con, day: dt.date, seed: int) -> None:
    """A run's 47 check results (written by the checks' own code, not the shared writer)."""
    con.register(
        "_checks", synthetic("ops.check_results", [f"c{i}" for i in range(47)], [day], seed)
    )
    con.execute("CREATE SCHEMA IF NOT EXISTS ops")
    con.execute("CREATE TABLE IF NOT EXISTS ops.check_results AS SELECT * FROM _checks LIMIT 0")
    con.execute("INSERT INTO ops.check_results SELECT * FROM _checks")
    con.unregister("_checks")


def measure(tickers: int, sessions: int, work: Path) -> dict:
    start = LAST - dt.timedelta(days=int((sessions + 1) * 1.5) + 30)
    days = [_date(d) for d in xnys().sessions_in_range(start, LAST)][-(sessions + 1) :]
    history, increment = days[:-1], days[-1:]
    names = [f"T{i:04d}" for i in range(tickers)]
    warehouse = work / "warehouse.duckdb"
    root = work / "serving"
    con = duckdb.connect(str(warehouse))
    for name in SESSION_TABLES:
        _write(con, name, names, history, seed=1)
    _write(con, FUNDAMENTALS, names, history[-len(history) // 3 :], seed=1)
    reference = {name: _reference(name, names, history[-1], seed=1) for name in REFERENCE}
    for name, frame in reference.items():
        _write_whole(con, name, frame)
    con.execute(MARTS_SQL)
    _check_results(con, history[-1], seed=1)
    parquet = ParquetCopy(root)

    def publish(**kwargs):
        return publish_snapshot(con, root, run_id="bench", parquet=parquet, **kwargs)

    full_s, full = _timed(publish)
    for name in (*SESSION_TABLES, FUNDAMENTALS):
        _write(con, name, names, increment, seed=2)
    _write_whole(con, "silver.symbols", reference["silver.symbols"])  # the same rows again
    actions = reference["silver.corporate_actions"].copy()
    moved = actions["ticker"].isin(names[:: max(len(names) // 15, 1)])  # 3% of the tickers
    actions.loc[moved, "last_seen_at"] = pd.Timestamp("2026-11-27", tz="UTC")
    _write_whole(con, "silver.corporate_actions", actions)
    facts = reference["silver.financial_facts"].copy()
    superseded = facts.index % 6 == 0
    facts.loc[superseded, "superseded_at"] = pd.Timestamp("2026-11-27", tz="UTC")
    restated = facts[superseded].assign(version=2, superseded_at=pd.NaT, value=1.0)
    _write_whole(con, "silver.financial_facts", pd.concat([facts, restated], ignore_index=True))
    con.execute(MARTS_INCREMENT_SQL.replace("$day", f"DATE '{increment[0]}'"))
    _check_results(con, increment[0], seed=2)
    inc_s, inc = _timed(publish)
    parquet_seconds = dict(parquet.seconds)
    same_s, same = _timed(publish)
    con.close()
    snapshot = inc.path
    cp_s, _ = _timed(lambda: subprocess.run(["cp", str(snapshot), str(work / "cp.duckdb")]))
    reader = duckdb.connect(str(snapshot), read_only=True)
    select1 = min(_timed(lambda: reader.execute("SELECT 1").fetchall())[0] for _ in range(50))
    reader.close()
    return {
        "tickers": tickers,
        "sessions": sessions,
        "snapshot_mib": round(snapshot.stat().st_size / 2**20, 1),
        "publish_full_s": round(full_s, 3),
        "publish_increment_s": round(inc_s, 3),
        "publish_increment_steps": inc.seconds,
        "increment_parquet_steps": parquet_seconds,
        "increment_rows_written": inc.rows_written,
        "increment_parquet_files": inc.parquet_files_written,
        "increment_modes": {k: v.mode for k, v in inc.tables.items() if v.mode != "unchanged"},
        "increment_table_seconds": {
            k: v.seconds for k, v in inc.tables.items() if v.mode != "unchanged"
        },
        "publish_unchanged_s": round(same_s, 3),
        "unchanged_new_snapshot": not same.unchanged,
        "cp_snapshot_s": round(cp_s, 3),
        "select1_ms": round(select1 * 1000, 3),
        "ratios": {
            "increment / full": round(inc_s / full_s, 4),
            "increment / cp": round(inc_s / cp_s, 2),
            "unchanged / cp": round(same_s / cp_s, 2),
        },
        "full_modes": sorted({v.mode for v in full.tables.values()}),
        "load_average": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=2520)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="publish-scale-") as work:
        result = measure(args.tickers, args.sessions, Path(work))
    text = json.dumps(result, indent=1, default=str)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
