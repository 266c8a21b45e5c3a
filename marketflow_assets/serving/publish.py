"""Publish a snapshot: an immutable DuckDB file built incrementally from the previous one.

1. Copy the current snapshot file to a partial file (a sequential file copy; no reader is
   disturbed: readers only hold the old file, which is never written).
2. Fingerprint every served warehouse table per part (`tables.py`: count and sum of row hashes)
   and compare with the fingerprints stored in the copy: only changed parts are deleted and
   re-inserted. A table that is new, changed shape, or changed in more than half its rows is
   rebuilt whole, sorted by (ticker, session_date), which also restores the sort order that
   appended increments erode.
3. Rebuild the small precomputed tables (`serving.latest_prices`, `serving.latest_features`), the
   manifest, then write the changed Parquet partitions and CHECKPOINT.
4. Rename the partial file into place, switch `current.duckdb` (one rename), and remove
   snapshots older than the newest `RETENTION`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from marketflow_assets.faults import fault_point
from marketflow_assets.serving import layout
from marketflow_assets.serving.comments import comment_served_tables
from marketflow_assets.serving.parquet_copy import ParquetCopy
from marketflow_assets.serving.tables import ServedTable, served_tables

RETENTION = 3
"""Snapshot files kept (the current one included). A reader that opened one keeps reading it
even after removal (POSIX keeps an open file alive); keeping a few also lets a reader that
resolved `current.duckdb` just before a switch still open the file it resolved."""
REBUILD_FRACTION = 0.5
STORAGE_VERSION = "v1.0.0"
"""The DuckDB storage format snapshots are written in: readable by any DuckDB >= 1.0 (Superset's
duckdb-engine, a notebook's duckdb), whatever newer DuckDB writes them (DuckDB 2 defaults to a
format older versions cannot open). Copies of a snapshot keep its format."""
SNAP = "snap"

FINGERPRINTS_DDL = """
CREATE TABLE IF NOT EXISTS snap.serving.fingerprints (
    table_name VARCHAR, ticker VARCHAR, part DATE, n BIGINT, h HUGEINT)
"""
LATEST_PRICES_SQL = """
CREATE OR REPLACE TABLE snap.serving.latest_prices AS
SELECT b.ticker, b.session_date, b.open, b.high, b.low, b.close, b.volume,
    b.adj_close, f.return_1d
FROM snap.silver.daily_bars b
JOIN (SELECT ticker, max(session_date) AS session_date FROM snap.silver.daily_bars GROUP BY 1)
    USING (ticker, session_date)
LEFT JOIN {features} f USING (ticker, session_date)
ORDER BY b.ticker
"""
LATEST_FEATURES_SQL = """
CREATE OR REPLACE TABLE snap.serving.latest_features AS
SELECT f.* FROM snap.gold.daily_features f
JOIN (SELECT ticker, max(session_date) AS session_date FROM snap.gold.daily_features GROUP BY 1)
    USING (ticker, session_date)
ORDER BY f.ticker
"""
EMPTY_FEATURES = (
    "(SELECT NULL::VARCHAR AS ticker, NULL::DATE AS session_date, NULL::DOUBLE AS return_1d)"
)


@dataclass
class TablePublish:
    mode: str  # "unchanged" | "incremental" | "rebuilt" | "dropped"
    rows: int = 0
    rows_written: int = 0
    parts_changed: int = 0
    latest_session: dt.date | None = None


@dataclass
class PublishResult:
    snapshot_id: str
    path: Path
    previous_id: str | None
    tables: dict[str, TablePublish] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    parquet_files_written: int = 0
    removed: list[str] = field(default_factory=list)

    @property
    def rows_written(self) -> int:
        return sum(t.rows_written for t in self.tables.values())


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._start = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._start, 3)
        self._start = now


def publish_snapshot(
    warehouse: duckdb.DuckDBPyConnection,
    root: Path,
    *,
    run_id: str,
    now: dt.datetime | None = None,
    full_rebuild: bool = False,
    parquet: ParquetCopy | None = None,
) -> PublishResult:
    """Publish the served tables of the open `warehouse` connection as a new current snapshot
    under `root` (`$MARKETFLOW_HOME/serving`)."""
    now = now or dt.datetime.now(dt.UTC)
    timer = _Timer()
    snapshots = root / layout.SNAPSHOTS
    snapshots.mkdir(parents=True, exist_ok=True)
    for leftover in snapshots.glob(f"{layout.PARTIAL_PREFIX}*"):
        leftover.unlink(missing_ok=True)  # a killed publish; never a published snapshot
    snapshot_id = layout.new_snapshot_id(now, run_id)
    previous = layout.current_target(root)
    if previous is not None and not previous.exists():
        previous = None
    partial = snapshots / f"{layout.PARTIAL_PREFIX}{snapshot_id}{layout.SUFFIX}"
    copied = previous is not None and not full_rebuild
    if copied:
        shutil.copyfile(previous, partial)
    result = PublishResult(snapshot_id, snapshots / f"{snapshot_id}{layout.SUFFIX}", None)
    result.previous_id = previous.stem if previous is not None else None
    timer.lap("copy_previous")

    try:
        options = "" if copied else f" (STORAGE_VERSION '{STORAGE_VERSION}')"
        warehouse.execute(f"ATTACH '{_sql_path(partial)}' AS {SNAP}{options}")
        try:
            warehouse.execute("CREATE SCHEMA IF NOT EXISTS snap.serving")
            warehouse.execute(FINGERPRINTS_DDL)
            changes = _publish_tables(warehouse, result)
            timer.lap("tables")
            _publish_derived(warehouse, result, run_id, now)
            comment_served_tables(warehouse, SNAP)
            timer.lap("latest_and_manifest")
            if parquet is not None:
                result.parquet_files_written = parquet.write(warehouse, SNAP, changes, result)
            timer.lap("parquet")
            warehouse.execute(f"CHECKPOINT {SNAP}")
        finally:
            warehouse.execute(f"DETACH {SNAP}")
        timer.lap("checkpoint")
        fault_point("snapshot.publish")  # complete but not yet current: a kill must change nothing
        partial.chmod(0o444)
        partial.replace(result.path)
        layout.switch_current(root, result.path)
    except BaseException:
        for leftover in (partial, partial.with_name(partial.name + ".wal")):
            leftover.unlink(missing_ok=True)
        raise
    result.removed = _apply_retention(root)
    timer.lap("switch")
    result.seconds = timer.seconds
    return result


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def _publish_tables(
    con: duckdb.DuckDBPyConnection, result: PublishResult
) -> dict[str, tuple[ServedTable, list[tuple[str | None, dt.date]] | None]]:
    """Bring every served table of the snapshot in line with the warehouse. Returns, per table,
    the parts that changed (None: all of them, the table was rebuilt or dropped)."""
    wanted = {t.qualified: t for t in served_tables(con)}
    present = {t.qualified: t for t in served_tables(con, SNAP)}
    changes: dict[str, tuple[ServedTable, list | None]] = {}
    for qualified, table in present.items():
        if qualified not in wanted:
            con.execute(f"DROP TABLE snap.{qualified}")
            con.execute("DELETE FROM snap.serving.fingerprints WHERE table_name = ?", [qualified])
            result.tables[_label(table)] = TablePublish("dropped")
            changes[qualified] = (table, None)
    for qualified, table in wanted.items():
        con.execute(f"CREATE SCHEMA IF NOT EXISTS snap.{table.schema}")
        same_shape = qualified in present and present[qualified].columns == table.columns
        publish, parts = _publish_table(con, table, same_shape)
        publish.rows = con.execute(f"SELECT count(*) FROM snap.{qualified}").fetchone()[0]
        if table.has_session:
            publish.latest_session = con.execute(
                f"SELECT max(session_date) FROM snap.{qualified}"
            ).fetchone()[0]
        result.tables[_label(table)] = publish
        if publish.mode != "unchanged":
            changes[qualified] = (table, parts)
    return changes


def _label(table: ServedTable) -> str:
    return f"{table.schema}.{table.name}"


def _publish_table(
    con: duckdb.DuckDBPyConnection, table: ServedTable, same_shape: bool
) -> tuple[TablePublish, list[tuple[str | None, dt.date]] | None]:
    name = table.qualified
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _new_fp AS "
        f"SELECT {table.ticker_expr()} AS ticker, {table.part_expr()} AS part, "
        f"count(*) AS n, sum(hash(t)) AS h FROM ({table.source_sql()}) t GROUP BY ALL"
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _changed AS "
        "SELECT coalesce(n.ticker, o.ticker) AS ticker, coalesce(n.part, o.part) AS part, "
        "coalesce(n.n, 0) AS rows_new, coalesce(o.n, 0) AS rows_old "
        "FROM _new_fp n FULL JOIN "
        "(SELECT * FROM snap.serving.fingerprints WHERE table_name = ?) o "
        "ON n.ticker IS NOT DISTINCT FROM o.ticker AND n.part = o.part "
        "WHERE n.h IS DISTINCT FROM o.h OR n.n IS DISTINCT FROM o.n",
        [name],
    )
    parts = con.execute("SELECT ticker, part FROM _changed").fetchall()
    written, total_new = con.execute(
        "SELECT coalesce(sum(rows_new), 0), (SELECT coalesce(sum(n), 0) FROM _new_fp) FROM _changed"
    ).fetchone()
    if same_shape and not parts:
        return TablePublish("unchanged"), []
    if not same_shape or written > REBUILD_FRACTION * max(total_new, 1):
        con.execute(
            f"CREATE OR REPLACE TABLE snap.{name} AS "
            f"SELECT * FROM ({table.source_sql()}) ORDER BY {table.order_by()}"
        )
        publish, parts_out = TablePublish("rebuilt", rows_written=int(total_new)), None
    else:
        match = f"c.part = {table.part_expr('x')}"
        if table.has_ticker:
            match += " AND c.ticker = x.ticker"
        con.execute(
            f"DELETE FROM snap.{name} AS x WHERE EXISTS (SELECT 1 FROM _changed c WHERE {match})"
        )
        con.execute(
            f"INSERT INTO snap.{name} SELECT * FROM ({table.source_sql()}) x "
            f"WHERE EXISTS (SELECT 1 FROM _changed c WHERE {match}) ORDER BY {table.order_by()}"
        )
        publish, parts_out = TablePublish("incremental", rows_written=int(written)), parts
    publish.parts_changed = len(parts)
    con.execute("DELETE FROM snap.serving.fingerprints WHERE table_name = ?", [name])
    con.execute("INSERT INTO snap.serving.fingerprints SELECT ?, * FROM _new_fp", [name])
    return publish, parts_out


def _publish_derived(
    con: duckdb.DuckDBPyConnection, result: PublishResult, run_id: str, now: dt.datetime
) -> None:
    """The precomputed latest rows the API's screening endpoints read, and the manifest."""
    tables = result.tables
    if "silver.daily_bars" in tables and tables["silver.daily_bars"].mode != "dropped":
        has_features = "gold.daily_features" in tables
        con.execute(
            LATEST_PRICES_SQL.format(
                features="snap.gold.daily_features" if has_features else EMPTY_FEATURES
            )
        )
    else:
        con.execute("DROP TABLE IF EXISTS snap.serving.latest_prices")
    if "gold.daily_features" in tables and tables["gold.daily_features"].mode != "dropped":
        con.execute(LATEST_FEATURES_SQL)
    else:
        con.execute("DROP TABLE IF EXISTS snap.serving.latest_features")
    con.execute(
        "CREATE OR REPLACE TABLE snap.serving.manifest (snapshot_id VARCHAR, run_id VARCHAR, "
        "created_at TIMESTAMPTZ, previous_snapshot_id VARCHAR, table_name VARCHAR, "
        "latest_session DATE, row_count BIGINT, publish_mode VARCHAR, rows_written BIGINT)"
    )
    rows = [
        (
            result.snapshot_id,
            run_id,
            now,
            result.previous_id,
            name,
            t.latest_session,
            t.rows,
            t.mode,
            t.rows_written,
        )
        for name, t in sorted(tables.items())
        if t.mode != "dropped"
    ]
    if rows:
        con.executemany(
            "INSERT INTO snap.serving.manifest VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
        )


def _apply_retention(root: Path) -> list[str]:
    """Remove all but the newest `RETENTION` snapshot files; never the current one."""
    current = layout.current_target(root)
    removed = []
    for old in layout.snapshot_files(root)[:-RETENTION]:
        if current is not None and old.name == current.name:
            continue
        with contextlib.suppress(FileNotFoundError):
            old.unlink()
            removed.append(old.stem)
    return removed
