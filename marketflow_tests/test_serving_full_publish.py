"""A publish from scratch (the snapshot of a backfill): tables the warehouse stores in key order
or not are both served as exactly the warehouse's rows, stored in (ticker, session_date) order,
with the same rows in the Parquet copy; the column comments go in one transaction, and a
failure while writing them leaves the previous snapshot current with nothing half-written."""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

from marketflow_assets.serving import layout
from marketflow_assets.serving.parquet_copy import ParquetCopy
from marketflow_assets.serving.publish import publish_snapshot

TICKERS = ["AAA", "BBB", "CCC"]
DAYS = list(pd.bdate_range("2024-01-02", periods=70).date)


@pytest.fixture
def warehouse(tmp_path):
    """Features stored ticker by ticker (in key order), bars session by session (not)."""
    path = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA silver; CREATE SCHEMA gold")
    grid = "(SELECT unnest(?::VARCHAR[]) AS ticker) CROSS JOIN (SELECT unnest(?::DATE[]) AS d)"
    con.execute(
        "CREATE TABLE gold.daily_features AS SELECT ticker, d AS session_date, "
        f"hash(ticker, d) % 1000 / 10.0 AS adj_close, 0.01::DOUBLE AS return_1d FROM {grid} "
        "ORDER BY ticker, session_date",
        [TICKERS, DAYS],
    )
    con.execute(
        "CREATE TABLE silver.daily_bars AS SELECT ticker, d AS session_date, 10.0::DOUBLE AS open, "
        "11.0::DOUBLE AS high, 9.0::DOUBLE AS low, 10.5::DOUBLE AS close, 1000::BIGINT AS volume, "
        "10.5::DOUBLE AS adj_close "
        f"FROM {grid} ORDER BY session_date, ticker DESC",
        [TICKERS, DAYS],
    )
    con.close()
    return path


def publish(warehouse, root, **kwargs):
    con = duckdb.connect(str(warehouse))
    try:
        return publish_snapshot(con, root, run_id="run-full", parquet=ParquetCopy(root), **kwargs)
    finally:
        con.close()


def stored(path, name: str) -> pd.DataFrame:
    """A table's rows in the order it stores them."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(f"SELECT * FROM {name} ORDER BY rowid").df()
    finally:
        con.close()


def test_tables_are_served_sorted_whether_or_not_the_warehouse_stores_them_so(warehouse, tmp_path):
    result = publish(warehouse, tmp_path / "serving")
    for name in ("gold.daily_features", "silver.daily_bars"):
        served = stored(result.path, name)
        expected = stored(warehouse, name).sort_values(["ticker", "session_date"])
        pd.testing.assert_frame_equal(served, expected.reset_index(drop=True))
        months = tmp_path / "serving" / "parquet" / name.replace(".", "/")
        copy = pd.read_parquet(months).drop(columns="session_month")
        copy["session_date"] = pd.to_datetime(copy["session_date"])
        assert len(copy) == len(served)
        pd.testing.assert_frame_equal(
            copy.sort_values(["ticker", "session_date"]).reset_index(drop=True),
            served.assign(session_date=pd.to_datetime(served["session_date"])),
            check_dtype=False,
        )


def test_a_failure_while_commenting_keeps_the_previous_snapshot(warehouse, tmp_path, monkeypatch):
    root = tmp_path / "serving"
    good = publish(warehouse, root)
    calls = []

    def failing(name):
        calls.append(name)
        if len(calls) == 2:
            raise RuntimeError("contract registry unavailable")
        from marketflow_assets.serving.columns import served_table

        return served_table(name)

    monkeypatch.setattr("marketflow_assets.serving.comments.served_table", failing)
    with pytest.raises(RuntimeError, match="registry unavailable"):
        publish(warehouse, root, full_rebuild=True)
    assert layout.current_target(root) == good.path
    assert not list((root / layout.SNAPSHOTS).glob(".partial-*"))
    assert [p.name for p in layout.snapshot_files(root)] == [good.path.name]

    monkeypatch.undo()
    again = publish(warehouse, root, full_rebuild=True)
    con = duckdb.connect(str(again.path), read_only=True)
    comments = con.execute(
        "SELECT comment FROM duckdb_columns() WHERE table_name = 'daily_features' "
        "AND column_name = 'adj_close'"
    ).fetchone()[0]
    con.close()
    assert comments  # the contract's description, written in the one transaction


def test_parquet_months_of_a_rebuild_over_several_years_equal_the_snapshot(tmp_path, monkeypatch):
    """A rebuilt table's months are read from its sorted snapshot copy, several whole years per
    COPY (here two, then the last one alone): every month of the snapshot has one file with
    exactly its rows, none else, and no staging folder is left."""
    monkeypatch.setattr("marketflow_assets.serving.parquet_copy.PASS_ROWS", 1_100)
    days = list(pd.bdate_range("2019-11-01", "2023-02-28").date)  # 5 years, ~2,600 rows
    path = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA silver")
    con.execute(
        "CREATE TABLE silver.daily_bars AS SELECT ticker, d AS session_date, 10.0::DOUBLE AS open, "
        "11.0::DOUBLE AS high, 9.0::DOUBLE AS low, hash(ticker, d) % 1000 / 10.0 AS close, "
        "1000::BIGINT AS volume, 10.5::DOUBLE AS adj_close "
        "FROM (SELECT unnest(?::VARCHAR[]) AS ticker) "
        "CROSS JOIN (SELECT unnest(?::DATE[]) AS d) ORDER BY session_date, ticker DESC",
        [TICKERS, days],
    )
    con.close()
    root = tmp_path / "serving"
    result = publish(path, root)
    folder = root / "parquet" / "silver" / "daily_bars"
    served = stored(result.path, "silver.daily_bars")
    served["session_month"] = pd.to_datetime(served["session_date"]).dt.strftime("%Y-%m")
    months = sorted(p.name.split("=", 1)[1] for p in folder.glob("session_month=*"))
    assert months == sorted(served["session_month"].unique())
    assert all(
        [p.name for p in (folder / f"session_month={m}").iterdir()] == ["data.parquet"]
        for m in months
    )
    for month, rows in served.groupby("session_month"):
        copy = pd.read_parquet(folder / f"session_month={month}" / "data.parquet")
        copy["session_date"] = pd.to_datetime(copy["session_date"])
        rows = rows.assign(session_date=pd.to_datetime(rows["session_date"]))
        pd.testing.assert_frame_equal(
            copy.sort_values(["ticker", "session_date"]).reset_index(drop=True),
            rows.drop(columns="session_month").reset_index(drop=True),
            check_dtype=False,
        )
    assert not list(folder.parent.glob(".tmp-*"))
