"""Publish a snapshot: an immutable DuckDB file built incrementally from the previous one.

1. Plan: what changed since the current snapshot. Tables the shared writer writes: the scopes
   (sessions x tickers) it journaled (`storage/change_journal.py`, `ops.table_changes`) after
   the watermark stored in the snapshot, whoever wrote them. Other tables (dbt marts,
   ops.check_results): fingerprints per part (`tables.py`: count and sum of row hashes) compared
   with those stored in the snapshot. Nothing changed: the current snapshot stays, nothing is
   written.
2. Copy the current snapshot file to a partial file (`copy_file_range`: in the kernel, a reflink
   where the filesystem shares extents; no reader is disturbed: readers only hold published
   files, which are never written).
3. Replace the changed scopes / parts (deleted, re-read from the warehouse). A table that is
   new, changed shape, changed in more than half its rows, or whose changes the journal cannot
   vouch for (a restored warehouse, a snapshot older than the journal) is rebuilt whole, sorted
   by (ticker, session_date), which also restores the sort order appended increments erode.
4. Rebuild the precomputed latest rows if their tables changed, store the journal watermark and
   the manifest, write the changed Parquet partitions and CHECKPOINT.
5. Rename the partial file into place, switch `current.duckdb` (one rename), remove
   snapshots older than the newest `RETENTION` and prune the journal up to the watermark the
   current snapshot stores (`change_journal.prune`), so it never grows with history.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from marketflow_assets.faults import fault_point
from marketflow_assets.serving import layout
from marketflow_assets.serving.comments import comment_served_tables
from marketflow_assets.serving.parquet_copy import ParquetCopy, ParquetJobs
from marketflow_assets.serving.tables import WHOLE_TABLE_PART, ServedTable, served_tables
from marketflow_assets.storage import change_journal

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
PREV = "prev"
MAX_SCOPES = 32
"""Journaled changes per table above which one bounding scope replaces them (a superset)."""

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
    seconds: float = 0.0  # this publish's time on the table (0 when unchanged)


@dataclass
class PublishResult:
    snapshot_id: str
    path: Path
    previous_id: str | None
    tables: dict[str, TablePublish] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    parquet_files_written: int = 0
    parquet_seconds: dict[str, float] = field(default_factory=dict)  # per table written
    removed: list[str] = field(default_factory=list)
    unchanged: bool = False  # nothing served changed: the previous snapshot stays current
    journal_pruned: int = 0  # change-journal rows the current snapshot no longer needs

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
    under `root` (`$MARKETFLOW_HOME/serving`). When nothing served changed since the current
    snapshot, it stays current and nothing is written (`PublishResult.unchanged`)."""
    now = now or dt.datetime.now(dt.UTC)
    timer = _Timer()
    snapshots = root / layout.SNAPSHOTS
    snapshots.mkdir(parents=True, exist_ok=True)
    for leftover in snapshots.glob(f"{layout.PARTIAL_PREFIX}*"):
        leftover.unlink(missing_ok=True)  # a killed publish; never a published snapshot
    previous = layout.current_target(root)
    if previous is not None and not previous.exists():
        previous = None
    if full_rebuild:
        previous = None
    watermark = change_journal.current_watermark(warehouse)
    plan = _plan(warehouse, previous)
    timer.lap("plan")
    if previous is not None and plan.nothing_changed():
        result = PublishResult(previous.stem, previous, previous.stem, unchanged=True)
        result.tables = plan.previous_tables
        if plan.since is not None:  # the current snapshot's watermark: the next publish reads on
            result.journal_pruned = change_journal.prune(warehouse, plan.since)
        result.seconds = timer.seconds
        return result

    snapshot_id = layout.new_snapshot_id(now, run_id)
    partial = snapshots / f"{layout.PARTIAL_PREFIX}{snapshot_id}{layout.SUFFIX}"
    if previous is not None:
        copy_file(previous, partial)
    result = PublishResult(snapshot_id, snapshots / f"{snapshot_id}{layout.SUFFIX}", None)
    result.previous_id = previous.stem if previous is not None else None
    timer.lap("copy_previous")

    try:
        options = "" if previous is not None else f" (STORAGE_VERSION '{STORAGE_VERSION}')"
        warehouse.execute(f"ATTACH '{_sql_path(partial)}' AS {SNAP}{options}")
        # Parquet partitions are written on a worker thread while the next tables are updated.
        # A rebuilt table's months are read from its sorted copy in the snapshot.
        jobs = parquet.start(warehouse, "", sorted_catalog=SNAP) if parquet is not None else None
        try:
            warehouse.execute("CREATE SCHEMA IF NOT EXISTS snap.serving")
            warehouse.execute(FINGERPRINTS_DDL)
            _publish_tables(warehouse, result, plan, jobs)
            timer.lap("tables")
            _publish_derived(warehouse, result, run_id, now, watermark)
            # Comments survive in the copied file; a table created anew has none yet.
            fresh = {name for name, t in result.tables.items() if t.mode == "rebuilt"}
            comment_served_tables(warehouse, SNAP, only=None if previous is None else fresh)
            timer.lap("latest_and_manifest")
            if jobs is not None:
                result.parquet_files_written = jobs.finish(result)
                result.parquet_seconds = dict(parquet.seconds)
            timer.lap("parquet")  # what is left of it once the snapshot's tables are done
            warehouse.execute(f"CHECKPOINT {SNAP}")
        finally:
            if jobs is not None:
                jobs.close()
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
    result.journal_pruned = change_journal.prune(warehouse, watermark)
    timer.lap("switch")
    result.seconds = timer.seconds
    return result


def copy_file(source: Path, target: Path) -> None:
    """Copy a snapshot file with `copy_file_range` (in the kernel; a reflink, i.e. no data
    copied, on filesystems that share extents: XFS, btrfs, NFS 4.2), else `shutil.copyfile`."""
    with source.open("rb") as src, target.open("wb") as dst:
        size = os.fstat(src.fileno()).st_size
        copied = 0
        try:
            while copied < size:
                n = os.copy_file_range(src.fileno(), dst.fileno(), size - copied)
                if n == 0:
                    break
                copied += n
        except OSError:  # not supported across these filesystems
            copied = -1
    if copied != size:
        shutil.copyfile(source, target)


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


@dataclass
class TablePlan:
    """What a publish does to one served table."""

    table: ServedTable
    action: str  # "unchanged" | "journal" | "fingerprint" | "rebuild" | "drop"
    journaled: bool = False
    changes: list[change_journal.Change] = field(default_factory=list)
    fingerprints: str | None = None  # temp table of the warehouse's fingerprints
    changed_parts: list[tuple[str | None, dt.date]] = field(default_factory=list)
    rows_changed: int = 0
    rows_total: int = 0


@dataclass
class Plan:
    tables: dict[str, TablePlan]
    previous_tables: dict[str, TablePublish]
    fingerprints_to_drop: list[str]
    since: change_journal.Watermark | None = None  # the previous snapshot's watermark

    def nothing_changed(self) -> bool:
        return all(t.action == "unchanged" for t in self.tables.values())


def _plan(con: duckdb.DuckDBPyConnection, previous: Path | None) -> Plan:
    """Decide per table, from the journal and (for tables it does not cover) fingerprints, what
    changed since the `previous` snapshot; all tables are rebuilt without one."""
    wanted = {t.qualified: t for t in served_tables(con)}
    journaled = change_journal.journaled_tables(con)
    if previous is None:
        tables = {
            q: TablePlan(t, "rebuild", journaled=_label(t) in journaled) for q, t in wanted.items()
        }
        return Plan(tables, {}, [])
    con.execute(f"ATTACH '{_sql_path(previous)}' AS {PREV} (READ_ONLY)")
    try:
        present = {t.qualified: t for t in served_tables(con, PREV)}
        since = _stored_watermark(con)
        changes = change_journal.changes_since(con, since) if since is not None else None
        tables: dict[str, TablePlan] = {}
        for qualified, table in present.items():
            if qualified not in wanted:
                tables[qualified] = TablePlan(table, "drop")
        stale_fingerprints = []
        for qualified, table in wanted.items():
            label = _label(table)
            if qualified not in present or present[qualified].columns != table.columns:
                tables[qualified] = TablePlan(table, "rebuild", journaled=label in journaled)
            elif label in journaled:
                stale_fingerprints.append(qualified)
                if changes is None:  # the journal cannot say what changed since then
                    tables[qualified] = TablePlan(table, "rebuild", journaled=True)
                else:
                    mine = [c for c in changes if c.table_name == label]
                    action = "journal" if mine else "unchanged"
                    tables[qualified] = TablePlan(table, action, journaled=True, changes=mine)
            else:
                tables[qualified] = _fingerprint_plan(con, table)
        previous_tables = _previous_tables(con)
    finally:
        con.execute(f"DETACH {PREV}")
    return Plan(tables, previous_tables, stale_fingerprints, since if changes is not None else None)


def _stored_watermark(con: duckdb.DuckDBPyConnection) -> change_journal.Watermark | None:
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = 'serving' "
        "AND table_name = 'publish_state'",
        [PREV],
    ).fetchone()[0]
    if not exists:  # published before the journal existed
        return None
    row = con.execute(f"SELECT change_id, change_uid FROM {PREV}.serving.publish_state").fetchone()
    return change_journal.Watermark(int(row[0]), row[1]) if row else None


def _previous_tables(con: duckdb.DuckDBPyConnection) -> dict[str, TablePublish]:
    rows = con.execute(
        f"SELECT table_name, latest_session, row_count FROM {PREV}.serving.manifest"
    ).fetchall()
    return {name: TablePublish("unchanged", rows=n, latest_session=s) for name, s, n in rows}


def _fingerprint_plan(con: duckdb.DuckDBPyConnection, table: ServedTable) -> TablePlan:
    """Compare the warehouse's fingerprints of a table the journal does not cover (count and
    sum of row hashes per part) with those stored in the previous snapshot."""
    name = table.qualified
    temp = f"_fp_{abs(hash(name))}"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {temp} AS "
        f"SELECT {table.ticker_expr()} AS ticker, {table.part_expr()} AS part, "
        f"count(*) AS n, sum(hash(t)) AS h FROM ({table.source_sql()}) t GROUP BY ALL"
    )
    changed = con.execute(
        "SELECT coalesce(n.ticker, o.ticker), coalesce(n.part, o.part), coalesce(n.n, 0) "
        f"FROM {temp} n FULL JOIN "
        f"(SELECT * FROM {PREV}.serving.fingerprints WHERE table_name = ?) o "
        "ON n.ticker IS NOT DISTINCT FROM o.ticker AND n.part = o.part "
        "WHERE n.h IS DISTINCT FROM o.h OR n.n IS DISTINCT FROM o.n",
        [name],
    ).fetchall()
    total = con.execute(f"SELECT coalesce(sum(n), 0) FROM {temp}").fetchone()[0]
    plan = TablePlan(table, "fingerprint" if changed else "unchanged", fingerprints=temp)
    plan.changed_parts = [(t, p) for t, p, _ in changed]
    plan.rows_changed = int(sum(n for _, _, n in changed))
    plan.rows_total = int(total)
    return plan


def _publish_tables(
    con: duckdb.DuckDBPyConnection,
    result: PublishResult,
    plan: Plan,
    jobs: ParquetJobs | None = None,
) -> dict[str, tuple[ServedTable, list[tuple[str | None, dt.date]] | None, tuple | None]]:
    """Bring every served table of the snapshot in line with the warehouse. Returns, per changed
    table, the parts that changed (None: all of them, the table was rebuilt or dropped) and,
    for journaled changes, their scope (SQL over alias `x` and its parameters): no row outside
    it changed since the previous snapshot. Each changed table goes to `jobs` (its Parquet
    partitions) as soon as the snapshot's copy of it is done."""
    changes: dict[str, tuple[ServedTable, list | None, tuple[str, list] | None]] = {}
    for qualified in plan.fingerprints_to_drop:
        con.execute("DELETE FROM snap.serving.fingerprints WHERE table_name = ?", [qualified])
    for qualified, item in plan.tables.items():
        table = item.table
        label = _label(table)
        if item.action == "drop":
            con.execute(f"DROP TABLE snap.{qualified}")
            con.execute("DELETE FROM snap.serving.fingerprints WHERE table_name = ?", [qualified])
            result.tables[label] = TablePublish("dropped")
            changes[qualified] = (table, None, None)
            if jobs is not None:
                jobs.submit(table, None, None, dropped=True)
            continue
        if item.action == "unchanged":
            result.tables[label] = plan.previous_tables.get(label) or _measure(
                con, table, TablePublish("unchanged")
            )
            continue
        started = time.perf_counter()
        con.execute(f"CREATE SCHEMA IF NOT EXISTS snap.{table.schema}")
        if item.action == "journal":
            publish, parts = _apply_journal(con, table, item.changes)
        elif item.action == "fingerprint":
            publish, parts = _apply_fingerprints(con, item)
        else:
            publish, parts = _rebuild(con, table), None
        if item.fingerprints is not None:
            con.execute("DELETE FROM snap.serving.fingerprints WHERE table_name = ?", [qualified])
            con.execute(
                f"INSERT INTO snap.serving.fingerprints SELECT ?, * FROM {item.fingerprints}",
                [qualified],
            )
            con.execute(f"DROP TABLE {item.fingerprints}")
        elif publish.mode == "rebuilt" and not item.journaled:
            _store_fingerprints(con, table)
        result.tables[label] = _measure(con, table, publish)
        publish.seconds = round(time.perf_counter() - started, 3)
        if publish.mode != "unchanged":
            scope = None  # the rows that may have changed, for the Parquet copy to patch months
            if item.action == "journal" and publish.mode == "incremental" and table.has_session:
                scope = _scope_predicate(table, item.changes)
            changes[qualified] = (table, parts, scope)
            if jobs is not None:
                jobs.submit(table, parts, scope)
    return changes


def _store_fingerprints(con: duckdb.DuckDBPyConnection, table: ServedTable) -> None:
    """Fingerprints of a table built from scratch, for the next publish to compare with while
    the journal does not cover it (never written by the shared writer yet)."""
    name = table.qualified
    con.execute("DELETE FROM snap.serving.fingerprints WHERE table_name = ?", [name])
    con.execute(
        f"INSERT INTO snap.serving.fingerprints SELECT ?, {table.ticker_expr()}, "
        f"{table.part_expr()}, count(*), sum(hash(t)) FROM snap.{name} t GROUP BY ALL",
        [name],
    )


def _measure(
    con: duckdb.DuckDBPyConnection, table: ServedTable, publish: TablePublish
) -> TablePublish:
    publish.rows = con.execute(f"SELECT count(*) FROM snap.{table.qualified}").fetchone()[0]
    if table.has_session:
        publish.latest_session = con.execute(
            f"SELECT max(session_date) FROM snap.{table.qualified}"
        ).fetchone()[0]
    return publish


def _label(table: ServedTable) -> str:
    return f"{table.schema}.{table.name}"


def _rebuild(con: duckdb.DuckDBPyConnection, table: ServedTable) -> TablePublish:
    written = con.execute(
        f"CREATE OR REPLACE TABLE snap.{table.qualified} AS "
        f"SELECT * FROM ({table.source_sql()}) ORDER BY {table.order_by()}"
    ).fetchone()[0]
    return TablePublish("rebuilt", rows_written=int(written))


def _scope_predicate(
    table: ServedTable, changes: list[change_journal.Change]
) -> tuple[str, list[object]]:
    """SQL (over alias `x`) matching every row the `changes` may have replaced."""
    if len(changes) > MAX_SCOPES:  # one bounding scope: a superset, never fewer rows
        firsts = [c.first_session for c in changes]
        lasts = [c.last_session for c in changes]
        tickers = [c.tickers for c in changes]
        changes = [
            change_journal.Change(
                changes[0].table_name,
                None if None in firsts else min(firsts),  # type: ignore[type-var]
                None if None in lasts else max(lasts),  # type: ignore[type-var]
                None if None in tickers else tuple(sorted({t for k in tickers for t in k})),  # type: ignore[union-attr]
            )
        ]
    clauses, params = [], []
    for change in changes:
        terms = ["TRUE"]
        if change.first_session is not None and table.has_session:
            terms.append("x.session_date BETWEEN ? AND ?")
            params += [change.first_session, change.last_session]
        if change.tickers is not None and table.has_ticker:
            terms.append("x.ticker IN (SELECT unnest(?::VARCHAR[]))")
            params.append(list(change.tickers))
        clauses.append(f"({' AND '.join(terms)})")
    return " OR ".join(clauses) or "FALSE", params


def _apply_journal(
    con: duckdb.DuckDBPyConnection, table: ServedTable, changes: list[change_journal.Change]
) -> tuple[TablePublish, list[tuple[str | None, dt.date]] | None]:
    """Replace the rows the journaled `changes` cover (deleted from the snapshot, re-read from
    the warehouse); intraday tables also follow their moving window of recent sessions."""
    name = table.qualified
    where, params = _scope_predicate(table, changes)
    if not table.has_session:  # reference tables: their writers replace them whole
        return _sync_rows(con, table, where, params)
    if table.intraday:  # sessions that left or entered the window are replaced too
        old = {
            d for (d,) in con.execute(f"SELECT DISTINCT session_date FROM snap.{name}").fetchall()
        }
        new = {
            d
            for (d,) in con.execute(
                f"SELECT DISTINCT session_date FROM ({table.source_sql()})"
            ).fetchall()
        }
        where = f"({where}) OR x.session_date NOT IN (SELECT unnest(?::DATE[]))"
        params = [*params, sorted(old & new)]
    source = f"({table.source_sql()}) x WHERE {where}"
    incoming = con.execute(f"SELECT count(*) FROM {source}", params).fetchone()[0]
    total = con.execute(f"SELECT count(*) FROM snap.{name}").fetchone()[0]
    if incoming > REBUILD_FRACTION * max(total, 1):
        return _rebuild(con, table), None
    parts_sql = f"SELECT DISTINCT {table.ticker_expr('x')}, {table.part_expr('x')} FROM snap.{name} x WHERE {where}"
    parts = set(con.execute(parts_sql, params).fetchall())
    deleted = con.execute(f"DELETE FROM snap.{name} x WHERE {where}", params).fetchone()[0]
    con.execute(
        f"INSERT INTO snap.{name} SELECT * FROM {source} ORDER BY {table.order_by()}", params
    )
    parts |= set(con.execute(parts_sql, params).fetchall())
    if not deleted and not incoming:
        return TablePublish("unchanged"), []
    publish = TablePublish("incremental", rows_written=int(incoming), parts_changed=len(parts))
    return publish, sorted(parts, key=lambda p: (p[0] or "", p[1]))


def _sync_rows(
    con: duckdb.DuckDBPyConnection, table: ServedTable, where: str, params: list[object]
) -> tuple[TablePublish, list[tuple[str | None, dt.date]] | None]:
    """Bring the snapshot's rows matching `where` (over alias `x`) in line with the warehouse's
    by replacing only the rows that differ: a table without a session date (symbols, corporate
    actions, financial facts, a mart per ticker) is rewritten whole by its writer although
    most rows stay the same (financial facts: ~1 in 6 per daily run). Rows are compared by
    their 64-bit hash (as fingerprints are), counted per hash on both sides: every hash whose
    count differs has all its rows replaced (a changed row is missed only if its hash equals
    the hash of the row it replaced). Hash aggregates: ~10x faster than EXCEPT ALL here."""
    name = table.qualified
    cols = ", ".join(f'x."{c}"' for c in table.column_names)
    source = f"({table.source_sql()})"
    ticker = table.ticker_expr("x")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _sync AS SELECT coalesce(a.h, b.h) AS h, "
        "coalesce(b.n, 0) AS incoming, coalesce(a.ticker, b.ticker) AS ticker FROM "
        f"(SELECT hash({cols}) AS h, count(*) AS n, any_value({ticker}) AS ticker "
        f"FROM snap.{name} x WHERE {where} GROUP BY h) a FULL JOIN "
        f"(SELECT hash({cols}) AS h, count(*) AS n, any_value({ticker}) AS ticker "
        f"FROM {source} x WHERE {where} GROUP BY h) b "
        "ON a.h = b.h WHERE a.n IS DISTINCT FROM b.n",
        params * 2,
    )
    try:
        changed, incoming = con.execute(
            "SELECT count(*), coalesce(sum(incoming), 0) FROM _sync"
        ).fetchone()
        if not changed:
            return TablePublish("unchanged"), []
        total = con.execute(f"SELECT count(*) FROM snap.{name}").fetchone()[0]
        if incoming > REBUILD_FRACTION * max(total, 1):
            return _rebuild(con, table), None
        # A table without a session date has one part per ticker (its Parquet copy one file).
        parts = con.execute(f"SELECT DISTINCT ticker, {WHOLE_TABLE_PART} FROM _sync").fetchall()
        match = f"({where}) AND hash({cols}) IN (SELECT h FROM _sync)"
        con.execute(f"DELETE FROM snap.{name} x WHERE {match}", params)
        con.execute(
            f"INSERT INTO snap.{name} SELECT * FROM {source} x WHERE {match} "
            f"ORDER BY {table.order_by()}",
            params,
        )
    finally:
        con.execute("DROP TABLE IF EXISTS _sync")
    publish = TablePublish("incremental", rows_written=int(incoming), parts_changed=len(parts))
    return publish, sorted(parts, key=lambda p: (p[0] or "", p[1]))


def _apply_fingerprints(
    con: duckdb.DuckDBPyConnection, item: TablePlan
) -> tuple[TablePublish, list[tuple[str | None, dt.date]] | None]:
    """Replace the parts whose fingerprints changed (a table the journal does not cover)."""
    table, name = item.table, item.table.qualified
    if not table.has_session:  # a part is a ticker's whole history: compare its rows
        tickers = sorted({t for t, _ in item.changed_parts if t is not None})
        if table.has_ticker and None not in {t for t, _ in item.changed_parts}:
            return _sync_rows(con, table, "x.ticker IN (SELECT unnest(?::VARCHAR[]))", [tickers])
        return _sync_rows(con, table, "TRUE", [])
    if item.rows_changed > REBUILD_FRACTION * max(item.rows_total, 1):
        return _rebuild(con, table), None
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _changed AS SELECT * FROM "
        "(SELECT unnest(?::VARCHAR[]) AS ticker, unnest(?::DATE[]) AS part)",
        [[t for t, _ in item.changed_parts], [p for _, p in item.changed_parts]],
    )
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
    con.execute("DROP TABLE _changed")
    publish = TablePublish(
        "incremental", rows_written=item.rows_changed, parts_changed=len(item.changed_parts)
    )
    return publish, item.changed_parts


def _publish_derived(
    con: duckdb.DuckDBPyConnection,
    result: PublishResult,
    run_id: str,
    now: dt.datetime,
    watermark: change_journal.Watermark,
) -> None:
    """The precomputed latest rows the API's screening endpoints read (rebuilt when their
    tables changed), the journal watermark the snapshot is in line with, and the manifest."""
    tables = result.tables
    bars, features = tables.get("silver.daily_bars"), tables.get("gold.daily_features")
    if features is not None and features.mode == "dropped":
        features = None
    fresh = result.previous_id is None
    if bars is not None and bars.mode != "dropped":
        if fresh or bars.mode != "unchanged" or (features and features.mode != "unchanged"):
            con.execute(
                LATEST_PRICES_SQL.format(
                    features="snap.gold.daily_features" if features else EMPTY_FEATURES
                )
            )
    else:
        con.execute("DROP TABLE IF EXISTS snap.serving.latest_prices")
    if features is not None:
        if fresh or features.mode != "unchanged":
            con.execute(LATEST_FEATURES_SQL)
    else:
        con.execute("DROP TABLE IF EXISTS snap.serving.latest_features")
    con.execute(
        "CREATE OR REPLACE TABLE snap.serving.publish_state (change_id BIGINT, change_uid VARCHAR)"
    )
    con.execute(
        "INSERT INTO snap.serving.publish_state VALUES (?, ?)",
        [watermark.change_id, watermark.change_uid],
    )
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
