"""Snapshot publish at history scale without the rest of the graph:
`python -m marketflow_assets.benchmark.publish_scale [--tickers 500] [--sessions 2520] [--out F]`.

Writes a synthetic history (random values, the contracts' columns) of `silver.daily_bars` and
`gold.daily_features` through the shared writer (so it is journaled, as a real run's is), plus a
small table only fingerprints cover (like a dbt mart), then measures in one process, so the
figures compare as ratios: the publish from scratch; the next session written by the shared
writer and its incremental publish (per step); a publish with nothing changed; and two
baselines on the same snapshot file: a plain `cp` of it and DuckDB's `SELECT 1` round trip.
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

TABLES = ("silver.daily_bars", "gold.daily_features")
LAST = dt.date(2026, 11, 25)


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


def measure(tickers: int, sessions: int, work: Path) -> dict:
    start = LAST - dt.timedelta(days=int((sessions + 1) * 1.5) + 30)
    days = [_date(d) for d in xnys().sessions_in_range(start, LAST)][-(sessions + 1) :]
    history, increment = days[:-1], days[-1:]
    names = [f"T{i:04d}" for i in range(tickers)]
    warehouse = work / "warehouse.duckdb"
    root = work / "serving"
    con = duckdb.connect(str(warehouse))
    for name in TABLES:
        _write(con, name, names, history, seed=1)
    con.execute(  # a table the journal does not cover (a dbt mart): fingerprints
        "CREATE TABLE gold.sector_daily AS SELECT session_date, count(*) AS n, avg(close) AS c "
        "FROM silver.daily_bars GROUP BY ALL"
    )

    parquet = ParquetCopy(root)

    def publish(**kwargs):
        return publish_snapshot(con, root, run_id="bench", parquet=parquet, **kwargs)

    full_s, full = _timed(publish)
    for name in TABLES:
        _write(con, name, names, increment, seed=2)
    con.execute(
        "INSERT INTO gold.sector_daily SELECT session_date, count(*), avg(close) "
        "FROM silver.daily_bars WHERE session_date = ? GROUP BY ALL",
        [increment[0]],
    )
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
