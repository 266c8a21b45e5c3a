"""Batched warehouse writes (`replace_staged`) and the pieces the backfill's speed rests on:
evicting by bytes held rather than per batch, one catalog query per write, Arrow reads, and the
classification's duplicate counts (now counted only for bars with copies)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from marketflow_assets.contracts import CONTRACTS
from marketflow_assets.contracts import bronze as bronze_contracts
from marketflow_assets.contracts import gold as gold_contracts
from marketflow_assets.storage import warehouse
from marketflow_assets.storage.warehouse import (
    TableWrite,
    ensure_all_tables,
    held_bytes,
    query_frame,
    write_table,
)
from marketflow_assets.transforms.bar_quality import classified_bars_sql

FEATURES = gold_contracts.DAILY_FEATURES
DAYS = pd.bdate_range("2024-01-02", periods=40)
BOUNDS = (DAYS[0].date(), DAYS[-1].date())


def _features(tickers: list[str], value: float) -> pd.DataFrame:
    """gold.daily_features rows of `tickers` x DAYS, every feature `value`."""
    keys = pd.MultiIndex.from_product([tickers, DAYS], names=["ticker", "session_date"])
    frame = keys.to_frame(index=False)
    for col in FEATURES.column_names[2:]:
        frame[col] = value
    return frame


@pytest.fixture()
def con(tmp_path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    connection.execute("SET TimeZone = 'UTC'")
    yield connection
    connection.close()


def _table(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return con.execute(f"SELECT * FROM {FEATURES.table} ORDER BY ticker, session_date").df()


def test_a_failure_midway_through_the_batches_leaves_the_table_as_it_was(con, tmp_path):
    write_table(con, FEATURES, TableWrite(rows=_features(["AAA", "BBB"], 1.0)), BOUNDS)
    before = _table(con)

    def batches() -> Iterator[pd.DataFrame]:
        yield _features(["AAA"], 2.0)
        yield _features(["BBB"], 2.0)
        raise RuntimeError("the third batch failed")

    with pytest.raises(RuntimeError, match="third batch"):
        write_table(con, FEATURES, TableWrite(rows=batches()), BOUNDS)
    pd.testing.assert_frame_equal(_table(con), before)
    # the scratch database is detached and its file removed
    assert not list(tmp_path.glob("*.pending*"))
    databases = {
        r[0] for r in con.execute("SELECT database_name FROM duckdb_databases()").fetchall()
    }
    assert warehouse.STAGE_DATABASE not in databases

    # and the same batches without the failure replace the scope exactly
    def good() -> Iterator[pd.DataFrame]:
        yield _features(["AAA"], 2.0)
        yield _features(["BBB"], 2.0)

    assert write_table(con, FEATURES, TableWrite(rows=good()), BOUNDS) == 2 * len(DAYS)
    after = _table(con)
    assert len(after) == len(before) and (after["sma_20"] == 2.0).all()


def test_batched_writes_evict_by_bytes_held_and_stay_bounded(con, monkeypatch):
    """Many batches through a small eviction threshold: DuckDB never holds much more than the
    threshold plus one batch, and it is not evicted after every batch."""
    limit = 4 * 2**20
    monkeypatch.setattr(warehouse, "EVICT_ABOVE_BYTES", limit)
    evictions = []
    release = warehouse.release_cache

    def counted(connection, *, above=0):
        if not above or held_bytes(connection) > above:
            evictions.append(held_bytes(connection))
        release(connection, above=above)

    monkeypatch.setattr(warehouse, "release_cache", counted)
    tickers = [f"T{i:03d}" for i in range(400)]
    held = []

    def batches() -> Iterator[pd.DataFrame]:
        for i in range(0, len(tickers), 10):  # 400 rows x 26 columns a batch (~0.1 MB)
            held.append(held_bytes(con))
            yield _features(tickers[i : i + 10], float(i))

    written = write_table(con, FEATURES, TableWrite(rows=batches()), BOUNDS)
    assert written == len(tickers) * len(DAYS)
    assert max(held) < limit + 16 * 2**20  # the threshold, plus a batch and DuckDB's own blocks
    assert len(evictions) < len(held)  # not once per batch
    # still the right rows
    sums = con.execute(
        f"SELECT ticker, min(sma_20), max(sma_20) FROM {FEATURES.table} GROUP BY ticker"
    ).df()
    expected = {t: float(i - i % 10) for i, t in enumerate(tickers)}
    assert len(sums) == len(tickers)
    assert (sums["min(sma_20)"] == sums["ticker"].map(expected)).all()
    assert (sums["max(sma_20)"] == sums["min(sma_20)"]).all()


def test_release_cache_above_a_threshold_only_evicts_past_it(con):
    con.execute("CREATE TABLE t AS SELECT range AS x, range::VARCHAR AS y FROM range(2000000)")
    con.execute("SELECT sum(x), max(y) FROM t").fetchall()
    held = held_bytes(con)
    assert held > 0
    warehouse.release_cache(con, above=held + 2**30)
    assert held_bytes(con) == held  # below the threshold: nothing evicted
    warehouse.release_cache(con, above=1)
    assert held_bytes(con) < held
    # the limit is restored either way
    assert con.execute("SELECT current_setting('memory_limit')").fetchone()[0] != "1.0 MiB"


def test_ensure_all_tables_creates_the_missing_ones_and_keeps_the_others(con):
    ensure_all_tables(con)
    write_table(con, FEATURES, TableWrite(rows=_features(["AAA"], 1.0)), BOUNDS)
    con.execute("DROP TABLE bronze.daily_bars")
    con.execute(f"ALTER TABLE {FEATURES.table} DROP COLUMN high_52w")
    ensure_all_tables(con)
    tables = {
        r[0]
        for r in con.execute(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables"
        ).fetchall()
    }
    assert set(CONTRACTS) <= tables
    columns = con.execute(f"SELECT * FROM {FEATURES.table}").df()
    assert set(columns.columns) == set(FEATURES.column_names)  # the dropped column came back
    assert len(columns) == len(DAYS) and columns["high_52w"].isna().all()
    con.execute(f"ALTER TABLE {FEATURES.table} ADD COLUMN surplus DOUBLE")
    with pytest.raises(dg.Failure, match="surplus"):
        ensure_all_tables(con)


def test_query_frame_gives_the_types_of_df_with_text_as_arrow_strings_on_request(con):
    sql = (
        "SELECT * FROM (VALUES ('AAA', DATE '2024-01-02', 1.5::DOUBLE, 2.25,"
        " TIMESTAMPTZ '2024-01-02 21:00:00+00'),"
        " (NULL, DATE '2024-01-03', NULL, NULL, NULL)) v(ticker, session_date, x, d, ts)"
    )
    expected = con.execute(sql).df()
    plain = query_frame(con, sql)
    arrow = query_frame(con, sql, arrow_text=True)
    for frame in (plain, arrow):
        assert frame["session_date"].dtype.kind == "M"
        assert list(frame["session_date"]) == list(expected["session_date"])
        assert frame["x"].dtype == np.float64 and np.isnan(frame["x"][1])
        assert frame["d"].dtype == expected["d"].dtype == np.float64  # a DECIMAL, as .df()
        assert frame["d"][0] == 2.25
        assert list(frame["ts"].dropna()) == list(expected["ts"].dropna())
    assert plain["ticker"].dtype == object and plain["ticker"][1] is None
    assert str(arrow["ticker"].dtype) == "string[pyarrow]" and arrow["ticker"].isna()[1]
    # DuckDB reads both back as the same VARCHAR values
    assert con.execute("SELECT ticker FROM arrow").fetchall() == [("AAA",), (None,)]


def test_copies_of_a_bar_are_counted_whether_they_agree_or_not(con):
    """Identical copies keep the first; copies that disagree are all rejected with how many
    values they hold (counted per bar with copies only)."""
    contract = bronze_contracts.DAILY_BARS
    con.execute("CREATE SCHEMA bronze")
    con.execute(contract.ddl())
    day = dt.date(2024, 6, 3)
    ts = pd.Timestamp("2024-06-03 04:00", tz="UTC")
    base = {
        "ticker": "AAA",
        "ts": ts,
        "interval": "1d",
        "bar_date": day,
        "session_date": day,
        "open": 10.0,
        "high": 11.0,
        "low": 9.5,
        "close": 10.5,
        "adj_close": 10.5,
        "volume": 1000.0,
        "dividends": 0.0,
        "stock_splits": 0.0,
        "source": "simulator",
        "fetched_at": pd.Timestamp("2024-06-04", tz="UTC"),
    }
    rows = [
        # AAA: two identical copies
        {**base, "fetch_id": "f1", "raw_object": "a"},
        {**base, "fetch_id": "f2", "raw_object": "b"},
        # BBB: three copies with two different closes
        {**base, "ticker": "BBB", "fetch_id": "f1", "raw_object": "a"},
        {**base, "ticker": "BBB", "fetch_id": "f2", "raw_object": "b"},
        {**base, "ticker": "BBB", "close": 10.6, "fetch_id": "f3", "raw_object": "c"},
        # CCC: one bar
        {**base, "ticker": "CCC", "fetch_id": "f1", "raw_object": "a"},
    ]
    frame = pd.DataFrame(rows)[contract.column_names]
    con.register("frame", frame)
    con.execute(f"INSERT INTO {contract.table} SELECT * FROM frame")
    got = con.execute(
        f"SELECT ticker, fetch_id, reason, detail FROM ({classified_bars_sql('1d')}) "
        "ORDER BY ticker, fetch_id",
        {"start": day, "end": day, "tickers": None},
    ).fetchall()
    conflict = "3 rows for this bar with 2 different values"
    assert got == [
        ("AAA", "f1", None, None),
        ("AAA", "f2", "duplicate", "copy 2 of 2 identical rows"),
        ("BBB", "f1", "conflicting_duplicate", conflict),
        ("BBB", "f2", "conflicting_duplicate", conflict),
        ("BBB", "f3", "conflicting_duplicate", conflict),
        ("CCC", "f1", None, None),
    ]
