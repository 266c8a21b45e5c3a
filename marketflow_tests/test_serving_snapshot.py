"""serving/snapshot publishing on a small synthetic warehouse: incremental = full rebuild,
changes found through the shared writer's journal (whoever made them) or fingerprints, atomic
switch, retention that never pulls a file from under a reader, the Parquet copy (local
and on S3 through moto's real HTTP endpoint)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import boto3
import duckdb
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from moto.server import ThreadedMotoServer

from marketflow_assets.api import create_app
from marketflow_assets.contracts import CONTRACTS
from marketflow_assets.serving import current_snapshot_path, layout
from marketflow_assets.serving.parquet_copy import ParquetCopy
from marketflow_assets.serving.publish import RETENTION, publish_snapshot
from marketflow_assets.storage.object_store import S3ObjectStore
from marketflow_assets.storage.warehouse import TableWrite, write_table
from marketflow_tests.helpers import make_settings

TICKERS = ("AAA", "BBB", "CCC", "DDD", "EEE", "FFF")
SERVED = ("silver.daily_bars", "gold.daily_features", "silver.symbols", "silver.intraday_bars_1m")


def build_warehouse(path: Path, sessions: int = 60) -> None:
    days = pd.bdate_range("2024-01-02", periods=sessions)
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA silver; CREATE SCHEMA gold; CREATE SCHEMA bronze")
    con.execute(
        "CREATE TABLE silver.daily_bars AS SELECT t.ticker, CAST(d AS DATE) AS session_date, "
        "10.0 + i AS open, 11.0 + i AS high, 9.0 + i AS low, 10.5 + i AS close, "
        "CAST(1000 + i AS BIGINT) AS volume, 9.0 + i AS adj_close "
        "FROM (SELECT unnest(?) AS d, generate_subscripts(?, 1) AS i) "
        "CROSS JOIN (SELECT unnest(?) AS ticker) t",
        [list(days), list(days), list(TICKERS)],
    )
    con.execute(
        "CREATE TABLE gold.daily_features AS SELECT ticker, session_date, adj_close, "
        "adj_close / 9.0 - 1 AS return_1d FROM silver.daily_bars"
    )
    con.execute(
        "CREATE TABLE silver.symbols AS SELECT * FROM (VALUES ('AAA', 'Tech'), ('BBB', 'Energy'), "
        "('CCC', 'Tech')) v(ticker, sector)"
    )
    con.execute(
        "CREATE TABLE silver.intraday_bars_1m AS SELECT ticker, session_date, "
        "CAST(session_date AS TIMESTAMPTZ) + INTERVAL 14 HOUR AS ts, close FROM silver.daily_bars"
    )
    con.execute("CREATE TABLE bronze.daily_bars AS SELECT * FROM silver.daily_bars")  # not served
    con.close()


def table(path: Path, name: str) -> pd.DataFrame:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(f"SELECT * FROM {name} ORDER BY ALL").df()
    finally:
        con.close()


def publish(warehouse: Path, root: Path, **kwargs):
    con = duckdb.connect(str(warehouse))
    try:
        return publish_snapshot(
            con, root, run_id="run-1234abcd", parquet=ParquetCopy(root), **kwargs
        )
    finally:
        con.close()


@pytest.fixture
def warehouse(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    build_warehouse(path)
    return path


def test_first_publish_serves_every_table_with_a_manifest(warehouse, tmp_path):
    settings = make_settings(tmp_path / "home")
    root = layout.serving_dir(settings)
    result = publish(warehouse, root)
    current = current_snapshot_path(settings)
    assert current == root / "current.duckdb" and current.is_symlink()
    assert current.resolve() == result.path
    for name in SERVED[:-1]:  # intraday: below
        pd.testing.assert_frame_equal(table(current, name), table(warehouse, name))
    con = duckdb.connect(str(current), read_only=True)
    manifest = con.execute(
        "SELECT table_name, latest_session, row_count, snapshot_id, run_id FROM serving.manifest"
    ).df()
    assert "bronze" not in " ".join(r[0] for r in con.execute("SHOW ALL TABLES").fetchall())
    con.close()
    row = manifest.set_index("table_name").loc["silver.daily_bars"]
    # Written in a storage format every DuckDB >= 1.0 reads (not the newer default).
    assert result.path.read_bytes()[8:16] == b"DUCK" + (64).to_bytes(4, "little")
    assert row["row_count"] == 360 and row["snapshot_id"] == result.snapshot_id
    assert row["latest_session"].date() == dt.date(2024, 3, 25)
    # Intraday tables keep only the latest sessions.
    intraday = table(current, "silver.intraday_bars_1m")
    assert intraday["session_date"].nunique() == 5


def test_increment_rewrites_only_changed_parts_and_equals_a_full_rebuild(warehouse, tmp_path):
    root = tmp_path / "serving"
    publish(warehouse, root)
    con = duckdb.connect(str(warehouse))
    # One new session for every ticker, and a restated (re-adjusted) history for one ticker.
    con.execute(
        "INSERT INTO silver.daily_bars SELECT ticker, DATE '2024-03-26', 99, 99, 99, 99, 5, 98 "
        "FROM (SELECT unnest(?) AS ticker)",
        [list(TICKERS)],
    )
    con.execute("UPDATE silver.daily_bars SET adj_close = adj_close * 0.5 WHERE ticker = 'BBB'")
    con.close()
    increment = publish(warehouse, root)
    bars = increment.tables["silver.daily_bars"]
    assert bars.mode == "incremental"
    # Others: only March (17 sessions + the new one) is rewritten; BBB: all its 61 rows.
    assert bars.rows_written == 5 * 18 + 61
    assert increment.tables["silver.symbols"].mode == "unchanged"
    full = publish(warehouse, tmp_path / "full", full_rebuild=True)
    for name in SERVED:
        pd.testing.assert_frame_equal(table(increment.path, name), table(full.path, name))
    pd.testing.assert_frame_equal(
        table(increment.path, "silver.daily_bars"), table(warehouse, "silver.daily_bars")
    )
    latest = table(increment.path, "serving.latest_prices")
    assert set(latest["session_date"].dt.date) == {dt.date(2024, 3, 26)}


def test_retention_keeps_the_newest_and_readers_keep_their_file(warehouse, tmp_path):
    root = tmp_path / "serving"
    first = publish(warehouse, root)
    reader = duckdb.connect(str(root / "current.duckdb"), read_only=True)
    for _ in range(RETENTION + 1):  # nothing changed: a new snapshot only when asked to
        last = publish(warehouse, root, full_rebuild=True)
    kept = layout.snapshot_files(root)
    assert [p.stem for p in kept][-1] == last.snapshot_id and len(kept) == RETENTION
    assert not first.path.exists()
    # The reader opened the first snapshot before it was removed: it still reads it whole.
    assert reader.execute("SELECT count(*) FROM silver.daily_bars").fetchone()[0] == 360
    assert reader.execute("SELECT DISTINCT snapshot_id FROM serving.manifest").fetchone()[0] == (
        first.snapshot_id
    )
    reader.close()
    assert not list((root / layout.SNAPSHOTS).glob(".partial-*"))


def test_a_failed_publish_leaves_the_current_snapshot_in_place(warehouse, tmp_path, monkeypatch):
    root = tmp_path / "serving"
    good = publish(warehouse, root)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("marketflow_assets.serving.publish._publish_derived", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        publish(warehouse, root, full_rebuild=True)
    assert layout.current_target(root) == good.path
    assert not list((root / layout.SNAPSHOTS).glob(".partial-*"))


def test_parquet_copy_is_date_partitioned_and_equals_the_snapshot(warehouse, tmp_path):
    root = tmp_path / "serving"
    result = publish(warehouse, root)
    folder = root / "parquet"
    assert (folder / "silver/daily_bars/session_month=2024-03/data.parquet").is_file()
    assert (folder / "silver/symbols/data.parquet").is_file()
    manifest = json.loads((folder / "_manifest.json").read_text())
    assert manifest["snapshot_id"] == result.snapshot_id
    bars = pd.read_parquet(folder / "silver" / "daily_bars")  # pyarrow: Hive partitions
    bars["session_date"] = pd.to_datetime(bars["session_date"])
    served = table(result.path, "silver.daily_bars")
    assert len(bars) == len(served)
    pd.testing.assert_frame_equal(
        bars.drop(columns="session_month")
        .sort_values(["ticker", "session_date"])
        .reset_index(drop=True),
        served.sort_values(["ticker", "session_date"]).reset_index(drop=True),
        check_dtype=False,
    )


def test_parquet_rebuild_writes_one_ordered_file_per_month(warehouse, tmp_path):
    """A rebuilt table is written in one partitioned COPY (also when DuckDB may hold only one
    file open at a time): one file per month, sorted by ticker and session, no staging left."""
    root = tmp_path / "serving"
    con = duckdb.connect(str(warehouse))
    try:
        con.execute("SET partitioned_write_max_open_files = 1")
        result = publish_snapshot(con, root, run_id="run-split", parquet=ParquetCopy(root))
    finally:
        con.close()
    folder = root / "parquet" / "silver" / "daily_bars"
    months = sorted(folder.glob("session_month=*"))
    assert months and all([p.name for p in m.iterdir()] == ["data.parquet"] for m in months)
    assert not list(folder.parent.glob(".tmp-*"))
    served = table(result.path, "silver.daily_bars")
    for month in months:
        rows = pd.read_parquet(month / "data.parquet")
        keys = list(zip(rows["ticker"], pd.to_datetime(rows["session_date"]), strict=True))
        assert keys == sorted(keys), month.name
    bars = pd.read_parquet(folder).drop(columns="session_month")
    assert len(bars) == len(served)


def test_parquet_copy_goes_to_s3_when_the_lake_is_there(warehouse, tmp_path, monkeypatch):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        for key, value in {
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(key, value)
        client = boto3.client("s3", endpoint_url=f"http://{host}:{port}")
        client.create_bucket(Bucket="lake")
        store = S3ObjectStore(client, "lake", "mf")
        root = tmp_path / "serving"
        con = duckdb.connect(str(warehouse))
        result = publish_snapshot(con, root, run_id="r", parquet=ParquetCopy(root, store))
        con.close()
        keys = store.list("serving/parquet/")
        assert "serving/parquet/_manifest.json" in keys
        assert "serving/parquet/silver/daily_bars/session_month=2024-03/data.parquet" in keys
        manifest = json.loads(store.get("serving/parquet/_manifest.json"))
        assert manifest["snapshot_id"] == result.snapshot_id
    finally:
        server.stop()


# -- the change journal: what the shared writer changed, whoever ran it -----------------------
DAYS = [d.date() for d in pd.bdate_range("2024-01-02", periods=60)]


def contract_rows(name: str, tickers, days, price: float) -> pd.DataFrame:
    """One row per (ticker, session) with the contract's columns (values by column type)."""
    contract = CONTRACTS[name]
    grid = pd.MultiIndex.from_product([list(tickers), list(days)], names=["ticker", "d"])
    grid = grid.to_frame(index=False)
    values = {
        "VARCHAR": "sim",
        "DOUBLE": price,
        "BIGINT": 100,
        "INTEGER": 1,
        "BOOLEAN": True,
    }
    frame = pd.DataFrame(index=grid.index)
    for column in contract.columns:
        if column.name == "ticker":
            frame[column.name] = grid["ticker"]
        elif column.sql_type == "DATE":
            frame[column.name] = grid["d"]
        elif column.sql_type == "TIMESTAMPTZ":
            frame[column.name] = pd.to_datetime(grid["d"]).dt.tz_localize("UTC") + pd.Timedelta(
                hours=15
            )
        else:
            frame[column.name] = values[column.sql_type]
    return frame


def write(warehouse: Path, name: str, rows: pd.DataFrame, bounds, tickers=None, run_id="run"):
    """A write through the shared writer, as any asset's run makes it (no publish)."""
    con = duckdb.connect(str(warehouse))
    try:
        write_table(con, CONTRACTS[name], TableWrite(rows, tickers=tickers), bounds, run_id=run_id)
    finally:
        con.close()


@pytest.fixture
def journaled(tmp_path):
    """A warehouse whose daily and intraday bars were written by the shared writer."""
    path = tmp_path / "journaled.duckdb"
    write(
        path,
        "silver.daily_bars",
        contract_rows("silver.daily_bars", TICKERS, DAYS, 10.0),
        (DAYS[0], DAYS[-1]),
    )
    recent = DAYS[-6:]
    write(
        path,
        "silver.intraday_bars_1m",
        contract_rows("silver.intraday_bars_1m", TICKERS, recent, 10.0),
        (recent[0], recent[-1]),
    )
    return path


def assert_served_as_warehouse(snapshot: Path, warehouse: Path, root: Path) -> None:
    full = publish(warehouse, root / "full", full_rebuild=True)
    for name in ("silver.daily_bars", "silver.intraday_bars_1m", "serving.latest_prices"):
        pd.testing.assert_frame_equal(table(snapshot, name), table(full.path, name))
    pd.testing.assert_frame_equal(
        table(snapshot, "silver.daily_bars"), table(warehouse, "silver.daily_bars")
    )


def test_an_increment_writes_only_the_changed_parts(journaled, tmp_path):
    root = tmp_path / "serving"
    publish(journaled, root)
    new_day = dt.date(2024, 3, 26)
    write(
        journaled,
        "silver.daily_bars",
        contract_rows("silver.daily_bars", TICKERS, [new_day], 11.0),
        (new_day, new_day),
    )
    write(
        journaled,
        "silver.intraday_bars_1m",
        contract_rows("silver.intraday_bars_1m", TICKERS, [new_day], 11.0),
        (new_day, new_day),
    )
    increment = publish(journaled, root)
    bars = increment.tables["silver.daily_bars"]
    assert (bars.mode, bars.rows_written, bars.parts_changed) == ("incremental", 6, 6)
    intraday = increment.tables["silver.intraday_bars_1m"]
    # The new session entered the 5-session window, the oldest left it: those two only.
    assert (intraday.mode, intraday.parts_changed) == ("incremental", 12)
    assert increment.tables["silver.symbols"].mode == "unchanged"
    # Parquet: the one month of daily bars, the one new intraday session (the old one removed).
    assert increment.parquet_files_written == 2
    intraday_days = sorted(p.name for p in (root / "parquet/silver/intraday_bars_1m").iterdir())
    assert intraday_days == [f"session_date={d}" for d in [*DAYS[-4:], new_day]]
    assert_served_as_warehouse(increment.path, journaled, tmp_path)


def test_a_change_by_a_run_that_did_not_publish_is_picked_up(journaled, tmp_path):
    root = tmp_path / "serving"
    publish(journaled, root)
    # Two runs that did not publish: a restated (re-adjusted) history for one ticker, then a
    # ticker-restricted correction of one session.
    write(
        journaled,
        "silver.daily_bars",
        contract_rows("silver.daily_bars", ["BBB"], DAYS, 5.0),
        (DAYS[0], DAYS[-1]),
        tickers=("BBB",),
        run_id="readjust",
    )
    write(
        journaled,
        "silver.daily_bars",
        contract_rows("silver.daily_bars", ["CCC"], DAYS[10:11], 7.0),
        (DAYS[10], DAYS[10]),
        tickers=("CCC",),
        run_id="fix",
    )
    later = publish(journaled, root)
    bars = later.tables["silver.daily_bars"]
    assert (bars.mode, bars.rows_written) == ("incremental", 61)
    assert later.parquet_files_written == 3  # BBB's three months
    assert_served_as_warehouse(later.path, journaled, tmp_path)
    # The three months were patched (their rows outside the changes kept, the changed ones
    # re-read): the Parquet copy still equals the snapshot.
    files = str(root / "parquet/silver/daily_bars/*/*.parquet")
    parquet = duckdb.sql(
        f"SELECT * FROM read_parquet('{files}', hive_partitioning = false) ORDER BY ALL"
    ).df()
    pd.testing.assert_frame_equal(parquet, table(later.path, "silver.daily_bars"))


def test_a_table_rewritten_whole_replaces_only_the_rows_that_differ(journaled, tmp_path):
    """Reference tables (no session date) are rewritten whole by their writers; the publish
    replaces only the rows that differ, and nothing (no Parquet file either) when none do."""
    root = tmp_path / "serving"
    symbols = contract_rows("silver.symbols", TICKERS, DAYS[-1:], 1.0)
    write(journaled, "silver.symbols", symbols, None)
    publish(journaled, root)
    parquet = root / "parquet/silver/symbols/data.parquet"
    written = parquet.stat().st_mtime_ns
    write(journaled, "silver.symbols", symbols, None, run_id="same-again")
    same = publish(journaled, root)
    assert same.tables["silver.symbols"].mode == "unchanged"
    assert same.parquet_files_written == 0 and parquet.stat().st_mtime_ns == written
    renamed = symbols.assign(name=symbols["name"].where(symbols["ticker"] != "BBB", "Bravo"))
    write(journaled, "silver.symbols", renamed, None, run_id="rename")
    later = publish(journaled, root)
    assert (later.tables["silver.symbols"].mode, later.tables["silver.symbols"].rows_written) == (
        "incremental",
        1,
    )
    full = publish(journaled, tmp_path / "full", full_rebuild=True)
    pd.testing.assert_frame_equal(
        table(later.path, "silver.symbols"), table(full.path, "silver.symbols")
    )
    assert table(later.path, "silver.symbols").query("ticker == 'BBB'")["name"].tolist() == [
        "Bravo"
    ]
    pd.testing.assert_frame_equal(
        pd.read_parquet(parquet).sort_values("ticker", ignore_index=True),
        table(later.path, "silver.symbols").sort_values("ticker", ignore_index=True),
        check_dtype=False,
    )


def test_an_unchanged_publish_writes_nothing(journaled, tmp_path):
    root = tmp_path / "serving"
    first = publish(journaled, root)
    manifest = (root / "parquet" / layout.PARQUET_MANIFEST).stat().st_mtime_ns
    # A write the snapshot does not serve (bronze) changes nothing served.
    write(
        journaled,
        "bronze.daily_bars",
        contract_rows("bronze.daily_bars", TICKERS, DAYS[-1:], 1.0),
        (DAYS[-1], DAYS[-1]),
    )
    again = publish(journaled, root)
    assert again.unchanged and again.snapshot_id == first.snapshot_id
    assert again.rows_written == 0 and again.parquet_files_written == 0
    assert [p.stem for p in layout.snapshot_files(root)] == [first.snapshot_id]
    assert (root / "parquet" / layout.PARQUET_MANIFEST).stat().st_mtime_ns == manifest


def test_a_journal_that_does_not_hold_the_watermark_rebuilds(journaled, tmp_path):
    """A restored warehouse's journal lacks the snapshot's watermark: nothing after it can be
    trusted, so the journaled tables are rebuilt, not patched."""
    root = tmp_path / "serving"
    publish(journaled, root)
    con = duckdb.connect(str(journaled))
    con.execute("DELETE FROM ops.table_changes")  # as if restored from an older backup
    con.execute("UPDATE silver.daily_bars SET close = 1 WHERE ticker = 'AAA'")
    con.close()
    later = publish(journaled, root)
    assert later.tables["silver.daily_bars"].mode == "rebuilt"
    assert_served_as_warehouse(later.path, journaled, tmp_path)


def test_the_journal_keeps_only_what_the_next_publish_reads(journaled, tmp_path):
    """Each publish prunes the journal up to the watermark its snapshot stores: a year of daily
    increments leaves one row per table, and what is pruned is never needed again."""
    root = tmp_path / "serving"
    publish(journaled, root)

    def journal_rows() -> list[tuple[int, str]]:
        con = duckdb.connect(str(journaled), read_only=True)
        try:
            return con.execute(
                "SELECT change_id, table_name FROM ops.table_changes ORDER BY change_id"
            ).fetchall()
        finally:
            con.close()

    pruned = 0
    for day in pd.bdate_range("2024-03-26", periods=5).date:
        for name in ("silver.daily_bars", "silver.intraday_bars_1m"):
            write(journaled, name, contract_rows(name, TICKERS, [day], 12.0), (day, day))
        pruned += publish(journaled, root).journal_pruned
    assert pruned == 5 * 2  # each publish drops the two changes the one before it consumed
    assert [t for _, t in journal_rows()] == ["silver.daily_bars", "silver.intraday_bars_1m"]

    # A write the snapshot does not serve: the unchanged publish keeps the watermark it stores
    # and every change after it, so a later served change is still found from there.
    write(
        journaled,
        "bronze.daily_bars",
        contract_rows("bronze.daily_bars", TICKERS, [day], 1.0),
        (day, day),
    )
    assert publish(journaled, root).unchanged
    assert len(journal_rows()) == 3
    write(
        journaled,
        "silver.daily_bars",
        contract_rows("silver.daily_bars", ["BBB"], [day], 99.0),
        (day, day),
        tickers=("BBB",),
    )
    later = publish(journaled, root)
    assert later.tables["silver.daily_bars"].mode == "incremental"
    assert_served_as_warehouse(later.path, journaled, tmp_path)
    assert [t for _, t in journal_rows()] == [
        "silver.intraday_bars_1m",
        "bronze.daily_bars",
        "silver.daily_bars",
    ]


def test_a_rolled_back_write_journals_nothing(journaled):
    outside = contract_rows("silver.daily_bars", ["AAA"], DAYS[:2], 3.0)
    con = duckdb.connect(str(journaled))
    try:
        before = con.execute("SELECT count(*) FROM ops.table_changes").fetchone()[0]
        with pytest.raises(Exception, match="outside the run's scope"):
            write_table(
                con, CONTRACTS["silver.daily_bars"], TableWrite(outside), (DAYS[0], DAYS[0])
            )
        assert con.execute("SELECT count(*) FROM ops.table_changes").fetchone()[0] == before
    finally:
        con.close()


def test_the_api_answers_repeats_from_its_cache_until_a_new_snapshot(journaled, tmp_path):
    settings = make_settings(tmp_path / "home")
    root = layout.serving_dir(settings)
    publish(journaled, root)
    client = TestClient(create_app(settings))
    first = client.get("/v1/prices/latest")
    assert first.status_code == 200 and client.get("/v1/prices/latest").content == first.content
    new_day = dt.date(2024, 3, 26)
    write(
        journaled,
        "silver.daily_bars",
        contract_rows("silver.daily_bars", TICKERS, [new_day], 11.0),
        (new_day, new_day),
    )
    later = publish(journaled, root)
    after = client.get("/v1/prices/latest").json()
    assert after["snapshot"] == later.snapshot_id
    assert {row["session_date"] for row in after["data"]} == {new_day.isoformat()}
