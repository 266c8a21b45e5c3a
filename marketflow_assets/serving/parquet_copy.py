"""The served tables as Hive-partitioned Parquet, for readers without MarketFlow or DuckDB files
(Spark, Trino, Athena, pandas, polars), locally and, when the lake is on S3, in the bucket too.

    parquet/silver/daily_bars/session_month=2024-06/data.parquet
    parquet/silver/intraday_bars_1m/session_date=2024-06-07/data.parquet
    parquet/silver/symbols/data.parquet
    parquet/_manifest.json      snapshot id, and per table: rows, latest session, files

Monthly partitions, so a one-session increment rewrites one file per table (a re-adjusted
ticker: every month, as its whole history changed). Only the partitions a publish changed are
rewritten (each file atomically: a temporary file,
then a rename; an S3 PUT is atomic by itself). `_manifest.json` is written last: a reader who
wants a consistent set reads the files it lists; the snapshot DuckDB file is always consistent.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from marketflow_assets.serving import layout
from marketflow_assets.serving.tables import ServedTable
from marketflow_assets.storage.object_store import ObjectStore

if TYPE_CHECKING:
    from marketflow_assets.serving.publish import PublishResult

DATA_FILE = "data.parquet"
S3_PREFIX = "serving/parquet"
PARQUET_OPTIONS = "FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1"
"""zstd at level 1, not DuckDB's default 3: the files are ~1% larger and encoding them (most
of a full publish's Parquet time: 10 years of features, bars and fundamentals) ~1.5x faster.
Any zstd reader reads either."""
PASS_ROWS = 500_000
"""Rows per partitioned COPY of a rebuilt table read from its sorted copy (no sort to hold):
whole years of months, as many as fit and DuckDB keeps files open (100: 8 years), so a small
table takes one or two passes (`gold.sector_daily`, 28k rows over 121 months: 2 COPYs, not 11)
and 10 years of features three (each pass holds its months' rows until their files close:
~100 MB per 500k rows of 26 columns)."""


class ParquetCopy:
    def __init__(self, root: Path, store: ObjectStore | None = None):
        self.root = root / layout.PARQUET
        self.store = store  # the S3 lake, when there is one
        self.seconds: dict[str, float] = {}  # of the last `write`, per table

    def write(
        self,
        con: duckdb.DuckDBPyConnection,
        catalog: str,
        changes: dict[str, tuple[ServedTable, list | None, tuple[str, list] | None]],
        result: PublishResult,
    ) -> int:
        """Rewrite the partitions of `changes` with the served rows of `catalog` (the warehouse
        when empty: the publisher holds it, so its rows are the snapshot's, and its tables,
        appended session by session, let a month be read without scanning ten years; the
        snapshot's are sorted by ticker); returns the number of files written."""
        jobs = self.start(con, catalog)
        for table, parts, scope in changes.values():
            label = f"{table.schema}.{table.name}"
            dropped = label not in result.tables or result.tables[label].mode == "dropped"
            jobs.submit(table, parts, scope, dropped=dropped)
        return jobs.finish(result)

    def start(
        self, con: duckdb.DuckDBPyConnection, catalog: str, sorted_catalog: str | None = None
    ) -> ParquetJobs:
        """The Parquet writes of one publish, table by table as the publisher submits them, on
        a worker thread with a cursor of its own (`ParquetJobs`). `sorted_catalog`: where a
        table submitted as rebuilt (all parts) is already complete and stored sorted by its
        key (the snapshot being written): its months are read from there, unsorted."""
        self.seconds = {}
        return ParquetJobs(self, con, catalog, sorted_catalog)

    def _write_one(
        self,
        con: duckdb.DuckDBPyConnection,
        catalog: str,
        table: ServedTable,
        parts: list | None,
        scope: tuple[str, list] | None,
        dropped: bool,
        sorted_catalog: str | None = None,
    ) -> int:
        started = time.perf_counter()
        folder = self.root / table.schema / table.name
        if dropped:
            self._remove_tree(folder)
            return 0
        written = self._write_table(con, catalog, table, parts, folder, scope, sorted_catalog)
        self.seconds[f"{table.schema}.{table.name}"] = round(time.perf_counter() - started, 3)
        return written

    def _write_table(
        self,
        con: duckdb.DuckDBPyConnection,
        catalog: str,
        table: ServedTable,
        parts: list | None,
        folder: Path,
        scope: tuple[str, list] | None = None,
        sorted_catalog: str | None = None,
    ) -> int:
        source = f"({table.source_sql(catalog)}) s"
        partition = table.parquet_partition()
        if partition is None:
            self._copy(con, f"SELECT * FROM {source}", folder / DATA_FILE)
            return 1
        key, expr = partition
        if parts is None and key == "session_month":
            if sorted_catalog is not None:
                sorted_source = f"({table.source_sql(sorted_catalog)}) s"
                return self._rebuild_months(con, sorted_source, table, expr, folder, True)
            return self._rebuild_months(con, source, table, expr, folder)
        if parts is None:  # rebuilt: every partition, and none of the old ones
            present = {
                str(v) for (v,) in con.execute(f"SELECT DISTINCT {expr} FROM {source}").fetchall()
            }
            targets = present | {p.name.split("=", 1)[1] for p in folder.glob(f"{key}=*")}
        elif key == "session_month":
            targets = {part.strftime("%Y-%m") for _, part in parts}
        else:
            targets = {part.isoformat() for _, part in parts}
        written = 0
        for value in sorted(targets):
            path = folder / f"{key}={value}" / DATA_FILE
            # `value` comes from the snapshot's own dates (YYYY-MM or YYYY-MM-DD), not a user;
            # a range on session_date (not `expr`) lets DuckDB skip row groups by zone maps.
            first = dt.date.fromisoformat(value if key == "session_date" else f"{value}-01")
            last = first if key == "session_date" else _month_end(first)
            rows = None
            if scope is not None and key == "session_month" and path.is_file():
                rows = self._patch_month(con, catalog, table, path, (first, last), scope)
            if rows is None:
                rows = self._copy(
                    con,
                    f"SELECT * FROM {source} WHERE session_date BETWEEN DATE '{first}' "
                    f"AND DATE '{last}' ORDER BY {table.order_by()}",
                    path,
                )
            if rows:
                written += 1
            else:  # the partition has no rows any more
                self._remove_tree(path.parent)
        return written

    def _patch_month(
        self,
        con: duckdb.DuckDBPyConnection,
        catalog: str,
        table: ServedTable,
        path: Path,
        month: tuple[dt.date, dt.date],
        scope: tuple[str, list],
    ) -> int | None:
        """Rewrite a month's file as its rows outside the journaled `scope` (unchanged since the
        file was written: nothing outside a scope changed) plus the warehouse's rows inside it.
        Reading the month from the warehouse instead scans the whole table when its history
        was written ticker by ticker (the month's rows sit in every row group: 0.6 s for the
        features of 500 tickers x 10 years); the old file and the scope's new rows are small.
        None when the old file cannot be read as this table (the caller reads the month)."""
        where, params = scope
        first, last = month
        cols = ", ".join(f'CAST(x."{c}" AS {kind}) AS "{c}"' for c, kind in table.columns)
        old = str(path).replace("'", "''")
        query = (
            f"SELECT * FROM (SELECT {cols} FROM read_parquet('{old}', hive_partitioning = false) x "
            f"WHERE NOT coalesce(({where}), false) UNION ALL "
            f"SELECT * FROM ({table.source_sql(catalog)}) x WHERE ({where}) "
            f"AND x.session_date BETWEEN DATE '{first}' AND DATE '{last}') "
            f"ORDER BY {table.order_by()}"
        )
        try:
            return self._copy(con, query, path, params * 2)
        except duckdb.Error:  # a file of another shape (written by hand, an older layout)
            return None

    def _rebuild_months(
        self,
        con: duckdb.DuckDBPyConnection,
        source: str,
        table: ServedTable,
        expr: str,
        folder: Path,
        presorted: bool = False,
    ) -> int:
        """Every month of a rebuilt table, whole years of months per partitioned COPY into a
        staging folder (one pass over each year, not one filtered scan per month: 120 for ten
        years), then each month's file moved into place atomically and months without rows
        removed. An unsorted `source` (the warehouse) is sorted a year at a time (the whole
        table's sort and 120 open month buffers took ~2 GB for 10 years of 500 tickers); a
        `presorted` one (the snapshot's copy, sorted by key) is read as stored, `PASS_ROWS` at
        a time: no second sort of what the snapshot just sorted. Either way a month's rows are
        in key order per chunk of the scan, the threads' chunks one after the other (DuckDB's
        partitioned write does not keep a whole partition's input order)."""
        staging = folder.parent / f".tmp-{folder.name}-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        try:
            first, last, rows = con.execute(
                f"SELECT min(session_date), max(session_date), count(*) FROM {source}"
            ).fetchone()
            span = self._years_per_pass(con, rows, first, last) if presorted else 1
            order = "" if presorted else f" ORDER BY {table.order_by()}"
            for year in range(first.year, last.year + 1, span) if first is not None else ():
                escaped = str(staging / str(year)).replace("'", "''")
                end = min(year + span - 1, last.year)
                con.execute(
                    f"COPY (SELECT *, {expr} AS session_month FROM {source} "
                    f"WHERE session_date BETWEEN DATE '{year}-01-01' AND DATE '{end}-12-31'"
                    f"{order}) TO '{escaped}' ({PARQUET_OPTIONS}, "
                    "PARTITION_BY (session_month), FILENAME_PATTERN 'part_{i}')"
                )
            months: dict[str, list[Path]] = {}
            for file in sorted(staging.glob("*/session_month=*/*.parquet")):
                months.setdefault(file.parent.name.split("=", 1)[1], []).append(file)
            for month, files in months.items():
                path = folder / f"session_month={month}" / DATA_FILE
                if len(files) == 1:  # the usual case; DuckDB splits a month it had to flush
                    path.parent.mkdir(parents=True, exist_ok=True)
                    files[0].replace(path)
                    self._put(path)
                else:
                    listed = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
                    self._copy(con, f"SELECT * FROM read_parquet([{listed}])", path)
            for old in folder.glob("session_month=*"):
                if old.name.split("=", 1)[1] not in months:
                    self._remove_tree(old)
            return len(months)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    @staticmethod
    def _years_per_pass(
        con: duckdb.DuckDBPyConnection, rows: int, first: dt.date | None, last: dt.date | None
    ) -> int:
        """Whole years per COPY: about `PASS_ROWS` rows, and no more months than DuckDB keeps
        files open (past that it splits a month into several files, merged again after)."""
        if first is None or last is None:
            return 1
        years = last.year - first.year + 1
        open_files = int(
            con.execute("SELECT current_setting('partitioned_write_max_open_files')").fetchone()[0]
        )
        return max(1, min(years * PASS_ROWS // max(rows, 1), open_files // 12))

    def _copy(
        self, con: duckdb.DuckDBPyConnection, query: str, path: Path, params: list | None = None
    ) -> int:
        """Write the rows of `query` to `path` (atomically); returns the rows. No rows: no file
        (the caller removes the partition)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{uuid.uuid4().hex}.parquet")
        escaped = str(tmp).replace("'", "''")
        try:
            rows = con.execute(
                f"COPY ({query}) TO '{escaped}' ({PARQUET_OPTIONS})", params or []
            ).fetchone()[0]
            if not rows and "WHERE" in query:
                tmp.unlink(missing_ok=True)
                return 0
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._put(path)
        return int(rows)

    def _put(self, path: Path) -> None:
        if self.store is not None:
            self.store.put(self._key(path), path.read_bytes())

    def _remove_tree(self, folder: Path) -> None:
        if not folder.exists():
            return
        if self.store is not None:
            for file in folder.rglob("*.parquet"):
                self.store.delete(self._key(file))
        shutil.rmtree(folder, ignore_errors=True)

    def _key(self, path: Path) -> str:
        return f"{S3_PREFIX}/{path.relative_to(self.root).as_posix()}"

    def _write_manifest(self, result: PublishResult, changed: set[str]) -> None:
        """`_manifest.json`; the files of a table this publish did not write are the previous
        manifest's (listing ten years of months of every table costs ~0.1 s)."""
        path = self.root / layout.PARQUET_MANIFEST
        try:
            previous = json.loads(path.read_bytes())["tables"]
        except (OSError, ValueError, KeyError, TypeError):
            previous = {}
        tables = {}
        for name, publish in sorted(result.tables.items()):
            if publish.mode == "dropped":
                continue
            schema, table = name.split(".", 1)
            folder = self.root / schema / table
            files = (previous.get(name) or {}).get("files")
            if name in changed or not isinstance(files, list):
                files = sorted(
                    p.relative_to(self.root).as_posix()
                    for p in folder.rglob(DATA_FILE)
                    if p.is_file()
                )
            tables[name] = {
                "rows": publish.rows,
                "latest_session": _iso(publish.latest_session),
                "files": files,
            }
        body = json.dumps(
            {
                "snapshot_id": result.snapshot_id,
                "created_at": dt.datetime.now(dt.UTC).isoformat(),
                "tables": tables,
            },
            indent=1,
        ).encode()
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{uuid.uuid4().hex}.json")
        tmp.write_bytes(body)
        tmp.replace(path)
        if self.store is not None:
            self.store.put(self._key(path), body)


class ParquetJobs:
    """One publish's Parquet writes on a worker thread, each table's as soon as the snapshot's
    copy of it is done, so they overlap the next tables' updates. Changed parts come from the
    warehouse and the previous files (a month of the snapshot's ticker-sorted copy is a scan of
    all of it); a table rebuilt whole from `sorted_catalog`, the snapshot's finished copy of it
    when given (already sorted: one sort per publish, not a second one per year; the worker
    only reads it, and the publisher no longer writes it). `finish` waits for them (a failed
    write fails the publish) and writes `_manifest.json`."""

    def __init__(
        self,
        copy: ParquetCopy,
        con: duckdb.DuckDBPyConnection,
        catalog: str,
        sorted_catalog: str | None = None,
    ):
        self.copy = copy
        self.catalog = catalog
        self.sorted_catalog = sorted_catalog
        self.cursor = con.cursor()  # DuckDB connections are per thread
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet")
        self.futures: list[Future[int]] = []
        self.changed: set[str] = set()

    def submit(
        self,
        table: ServedTable,
        parts: list | None,
        scope: tuple[str, list] | None,
        *,
        dropped: bool = False,
    ) -> None:
        self.changed.add(f"{table.schema}.{table.name}")
        self.futures.append(
            self.pool.submit(
                self.copy._write_one,
                self.cursor,
                self.catalog,
                table,
                parts,
                scope,
                dropped,
                self.sorted_catalog,
            )
        )

    def finish(self, result: PublishResult) -> int:
        """Wait for every write; then the manifest. Returns the number of files written."""
        try:
            written = sum(future.result() for future in self.futures)
        finally:
            self.close()
        started = time.perf_counter()
        self.copy._write_manifest(result, self.changed)
        self.copy.seconds["_manifest.json"] = round(time.perf_counter() - started, 3)
        return written

    def close(self) -> None:
        """Stop: pending writes are cancelled, a running one completes (each file is written
        atomically, so none is left half-written)."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.cursor.close()


def _month_end(first: dt.date) -> dt.date:
    following = (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return following - dt.timedelta(days=1)


def _iso(value: dt.date | None) -> str | None:
    return value.isoformat() if value is not None else None
