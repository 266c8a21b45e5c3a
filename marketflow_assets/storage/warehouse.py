"""The DuckDB warehouse: connections, and the IO manager that owns every table write.

Warehouse assets return a `TableWrite` (a SELECT over warehouse tables, or a DataFrame). The IO
manager replaces exactly the rows the run owns, in one transaction:

    DELETE rows of the run's sessions [and tickers];  INSERT the new rows;  COMMIT

so a re-materialized partition is replaced, other partitions are never touched, a run
restricted to some tickers never deletes other tickers' rows, and a failure leaves the previous
rows in place. Rows outside the run's scope are a bug in the asset and fail the write.

Writes in batches (an iterator of frames, or a query computed a few sessions at a time with
`chunk_sessions`) keep memory bounded however long the range: each batch is appended to a
staging table (in a scratch database file, so the warehouse file does not grow) and committed on
its own, then one transaction replaces the scope with the staged rows (see `replace_staged`), so
the replace stays all or nothing.
The same IO manager loads any table slice by asset key and partition (`load_asset_value`).
"""

import datetime as dt
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pandas as pd
import pyarrow as pa
from dagster_duckdb import DuckDBResource
from pydantic import Field, PrivateAttr

from marketflow_assets.calendar import xnys
from marketflow_assets.contracts import CONTRACTS, TableContract, contract_for
from marketflow_assets.faults import fault_point
from marketflow_assets.storage.change_journal import ensure_journal, record_change
from marketflow_assets.storage.warehouse_lock import (
    WarehouseLockTimeout,
    is_kept,
    keep_between_blocks,
    let_go,
    warehouse_lock,
)

PREVIEW_ROWS = 5
STAGE_DATABASE = (
    "_pending"  # batched writes stage here: a file next to the warehouse, removed after
)
# A batched write lets DuckDB hold this much (cached blocks of earlier batches) before evicting:
# memory stays bounded whatever the range, without an eviction per batch.
EVICT_ABOVE_BYTES = 256 * 2**20


class WarehouseResource(DuckDBResource):
    """DuckDB warehouse file. Connections always close (also on error), so the file is free
    for the next process (dbt runs as a subprocess). Every connection holds the warehouse lock
    (`warehouse_lock.py`): one process at a time even where no pool is enforced."""

    lock_timeout_seconds: float = Field(
        default=600.0,
        description="How long a step waits for another process to release the warehouse "
        "before it fails naming that process (MARKETFLOW_WAREHOUSE_LOCK_TIMEOUT_SECONDS).",
    )
    memory_limit: str = Field(
        default="1GB",
        description="DuckDB's memory limit for the run process's warehouse connections "
        "(buffer cache and operators; larger work spills to disk). DuckDB's own default, 80% of "
        "RAM, lets cached blocks pile up over a long run.",
    )
    keep_open: bool = Field(
        default=True,
        description="Keep the warehouse open in the run's process from one connection to the "
        "next (DuckDB's instance and the warehouse lock) instead of opening it for every step, "
        "check and write (20-100 ms each, and a checkpoint at each close). Another process "
        "asking for the warehouse gets it within ~0.1 s of this run's current block; the run's "
        "end releases it.",
    )
    _run_id: str | None = PrivateAttr(default=None)
    _keep: bool = PrivateAttr(default=False)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._run_id = context.run.run_id if context.run else None
        self._keep = self.keep_open and self.database != ":memory:"

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self._keep = False
        let_go(self.database)

    @contextmanager
    def lock(self, what: str) -> Iterator[None]:
        """Hold the warehouse for a block in which another process (a dbt subprocess) opens
        it: the instance this process keeps open between its connections is closed first."""
        with self._locked(what):
            let_go(self.database)
            yield

    @contextmanager
    def _locked(self, what: str) -> Iterator[None]:
        logger = dg.get_dagster_logger()
        try:
            with warehouse_lock(
                self.database,
                timeout_seconds=self.lock_timeout_seconds,
                what=what,
                run_id=self._run_id,
                log=logger.info,
            ):
                yield
        except WarehouseLockTimeout as exc:
            raise dg.Failure(str(exc), allow_retries=False) from exc

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self.database != ":memory:":
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        with self._locked("warehouse connection"), super().get_connection() as con:
            try:
                con.execute("SET TimeZone = 'UTC'")
                con.execute(f"SET memory_limit = '{self.memory_limit}'")
                yield con
            finally:
                if self._keep and not is_kept(self.database):
                    self._keep_instance(con)
                con.close()

    def _keep_instance(self, con: duckdb.DuckDBPyConnection) -> None:
        """Keep DuckDB's instance of the warehouse open after `con` closes: one more connection
        to it (DuckDB's instance cache: the same file and configuration as DuckDBResource
        opens it), closed when the lock is let go. What DuckDB caches beyond
        `EVICT_ABOVE_BYTES` is evicted first, so the kept instance holds little memory."""
        try:
            release_cache(con, above=EVICT_ABOVE_BYTES)
            kept = duckdb.connect(
                self.database,
                read_only=False,
                config={"custom_user_agent": "dagster", **self.connection_config},
            )
        except duckdb.Error:
            return  # e.g. a failed transaction still open: the warehouse closes as usual
        if not keep_between_blocks(self.database, kept.close):
            kept.close()


@dataclass(frozen=True)
class TableWrite:
    """The rows of the partitions (and tickers) a run owns.

    The IO manager reads `metadata` after the rows are written, so a batch generator may fill
    in counts as it goes."""

    # A SELECT over warehouse tables, a frame with the contract's columns, or an iterable of
    # such frames (batches: bounded memory however many sessions a run covers).
    rows: str | pd.DataFrame | Iterable[pd.DataFrame]
    params: dict[str, Any] | tuple[Any, ...] = ()
    tickers: tuple[str, ...] | None = None  # replace only these tickers' rows; None = all
    metadata: dict[str, Any] = field(default_factory=dict)
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)  # registered for `rows` SQL
    # SQL only: run the query for at most this many sessions at a time, `$start`/`$end` bound to
    # each chunk's dates (`params` must be named), and stage the results. For queries whose rows
    # of a session depend only on that session's inputs (windows and aggregates per session):
    # the same rows, with the memory of one chunk whatever the range.
    chunk_sessions: int | None = None


def _table_columns(
    con: duckdb.DuckDBPyConnection, contracts: Iterable[TableContract]
) -> dict[str, set[str]]:
    """The columns each of these tables has now (no entry: the table does not exist), read in
    one catalog query."""
    tables = [c.table for c in contracts]
    columns: dict[str, set[str]] = {}
    for table, column in con.execute(
        "SELECT table_schema || '.' || table_name, column_name FROM information_schema.columns "
        "WHERE table_catalog = current_database() "
        "AND list_contains(?, table_schema || '.' || table_name)",
        [tables],
    ).fetchall():
        columns.setdefault(table, set()).add(column)
    return columns


def ensure_table(
    con: duckdb.DuckDBPyConnection, contract: TableContract, existing: set[str] | None = None
) -> None:
    """Create the table if missing, add the columns its contract gained, and refuse columns it
    lost. `existing`: the table's columns as already read (`_table_columns`), to skip the DDL of
    a table that is there."""
    if existing is None:
        existing = _table_columns(con, [contract]).get(contract.table)
    if not existing:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {contract.schema}")
        con.execute(contract.ddl())
        existing = _table_columns(con, [contract])[contract.table]
    for col in contract.columns:
        if col.name not in existing:  # additive contract change: new nullable column
            con.execute(f"ALTER TABLE {contract.table} ADD COLUMN {col.name} {col.sql_type}")
    extra = existing - set(contract.column_names)
    if extra:
        raise dg.Failure(
            f"{contract.table} has column(s) {sorted(extra)} that its contract no longer lists; "
            "drop or migrate them (the warehouse can be rebuilt from raw)"
        )


def ensure_all_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Every contract's table, so queries across layers never meet a missing table (e.g. the
    rejected-rows query reads bronze intraday before any intraday run). One catalog query when
    they all exist (every write calls this)."""
    existing = _table_columns(con, CONTRACTS.values())
    for contract in CONTRACTS.values():
        ensure_table(con, contract, existing.get(contract.table, set()))


def session_bounds(context: dg.OutputContext | dg.InputContext) -> tuple[dt.date, dt.date] | None:
    """[first, last] session dates of a partitioned context, or None if unpartitioned."""
    if not context.has_asset_partitions:
        return None
    window = context.asset_partitions_time_window
    last_day = (window.end - dt.timedelta(microseconds=1)).date()
    return window.start.date(), last_day


def scope_sql(
    contract: TableContract, bounds: tuple[dt.date, dt.date] | None, tickers: tuple[str, ...] | None
) -> tuple[str, list[Any]]:
    clauses, params = ["TRUE"], []
    if bounds is not None and contract.partition_column:
        clauses.append(f"{contract.partition_column} BETWEEN ? AND ?")
        params += list(bounds)
    if tickers is not None and contract.ticker_column:
        clauses.append(f"{contract.ticker_column} IN (SELECT unnest(?::VARCHAR[]))")
        params.append(list(tickers))
    return " AND ".join(clauses), params


def session_chunks(bounds: tuple[dt.date, dt.date], size: int) -> list[tuple[dt.date, dt.date]]:
    """[first, last] date windows that tile `bounds` exactly (no day left out, none twice),
    each holding at most `size` sessions."""
    if size < 1:
        raise ValueError(f"chunk size must be at least one session, got {size}")
    sessions = xnys().sessions_in_range(*bounds)
    ends = [sessions[i] for i in range(size - 1, len(sessions) - 1, size)] + [bounds[1]]
    starts = [bounds[0], *(end + dt.timedelta(days=1) for end in ends[:-1])]
    return list(zip(starts, ends, strict=True))


def _scope_check(
    con: duckdb.DuckDBPyConnection,
    contract: TableContract,
    relation: str,
    where: str,
    where_params: list[Any],
    bounds: tuple[dt.date, dt.date] | None,
    tickers: tuple[str, ...] | None,
) -> None:
    outside = con.execute(
        f"SELECT count(*) FROM {relation} WHERE NOT ({where})", where_params
    ).fetchall()[0][0]
    if outside:
        raise dg.Failure(
            f"{contract.table}: {outside} row(s) fall outside the run's scope "
            f"(sessions {bounds}, tickers {tickers}); refusing to write them"
        )


def _check_present(
    con: duckdb.DuckDBPyConnection,
    contract: TableContract,
    where: str,
    where_params: list[Any],
    written: int,
) -> None:
    present = con.execute(
        f"SELECT count(*) FROM {contract.table} WHERE {where}", where_params
    ).fetchall()[0][0]
    if present != written:
        raise dg.Failure(
            f"{contract.table}: wrote {written} rows but {present} are in scope; rolled back"
        )


def write_table(
    con: duckdb.DuckDBPyConnection,
    contract: TableContract,
    write: TableWrite,
    bounds: tuple[dt.date, dt.date] | None,
    run_id: str | None = None,
) -> int:
    """Replace the scoped rows of a table with `write.rows` in one transaction; returns rows
    written. Before committing, the rows now in scope must be exactly the rows written, and the
    scope is journaled (`change_journal`) in the same transaction.
    Batched writes (frame iterators, chunked SQL) go through `replace_staged`.

    DuckDB 2.0.0 silently copies 0 rows out of a table that was created empty and then filled by
    one INSERT of more than a row group (122,880 rows) in the same transaction. So frames are
    inserted straight into the target, SQL results are staged with CREATE TABLE AS (unaffected),
    and the count check turns any such loss into a failed, rolled-back write."""
    ensure_all_tables(con)
    ensure_journal(con)
    if not isinstance(write.rows, str | pd.DataFrame):
        return replace_staged(con, contract, write, bounds, run_id=run_id)
    if isinstance(write.rows, str):
        chunks = query_chunks(write, bounds)
        if len(chunks) > 1:
            return replace_staged(con, contract, write, bounds, chunks, run_id=run_id)
    cols = ", ".join(contract.column_names)
    where, where_params = scope_sql(contract, bounds, write.tickers)

    def insert(relation: str) -> int:
        _scope_check(con, contract, relation, where, where_params, bounds, write.tickers)
        return con.execute(
            f"INSERT INTO {contract.table} ({cols}) SELECT {cols} FROM {relation}"
        ).fetchall()[0][0]

    con.execute("BEGIN TRANSACTION")
    try:
        if isinstance(write.rows, str):
            # Evaluated before anything is deleted: the query may read the table it replaces.
            for name, frame in write.frames.items():
                con.register(name, frame)
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE _stage AS SELECT {cols} FROM ({write.rows})",
                write.params,
            )
            for name in write.frames:
                con.unregister(name)
            con.execute(f"DELETE FROM {contract.table} WHERE {where}", where_params)
            written = insert("_stage")
            con.execute("DROP TABLE _stage")
        else:
            con.execute(f"DELETE FROM {contract.table} WHERE {where}", where_params)
            con.register("_batch", write.rows)
            written = insert("_batch")
            con.unregister("_batch")
        _check_present(con, contract, where, where_params, written)
        record_change(
            con, contract.table, _scoped(contract, bounds), _tickers(contract, write), run_id
        )
        fault_point("warehouse.replace")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return int(written)


def _scoped(
    contract: TableContract, bounds: tuple[dt.date, dt.date] | None
) -> tuple[dt.date, dt.date] | None:
    """The sessions a write replaced, as `scope_sql` scopes them (None: all)."""
    return bounds if contract.partition_column else None


def _tickers(contract: TableContract, write: TableWrite) -> tuple[str, ...] | None:
    return write.tickers if contract.ticker_column else None


def held_bytes(con: duckdb.DuckDBPyConnection) -> int:
    """Bytes DuckDB's buffer manager holds now (cached and in-use blocks, all databases)."""
    return int(con.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchall()[0][0])


def release_cache(con: duckdb.DuckDBPyConnection, *, above: int = 0) -> None:
    """Evict the blocks DuckDB holds but no longer needs. DuckDB evicts only at its memory limit
    (80% of RAM by default), so a long batched write or a long series of checks would otherwise
    keep every block it has read or written, and its memory would grow with the range. Lowering
    the limit evicts them (to the database file, or its temp folder for uncommitted data); the
    limit is then restored. Best effort: what cannot be evicted stays.

    `above`: only when DuckDB holds more than this many bytes (`held_bytes`), so a loop over
    batches evicts every few batches instead of after each one (each eviction drops blocks the
    next batch may read again, and costs a round of setting changes)."""
    if above and held_bytes(con) <= above:
        return
    limit = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    try:
        con.execute("SET memory_limit = '1MB'")
    except duckdb.Error:
        pass
    finally:
        con.execute(f"SET memory_limit = '{limit}'")


def replace_staged(
    con: duckdb.DuckDBPyConnection,
    contract: TableContract,
    write: TableWrite,
    bounds: tuple[dt.date, dt.date] | None,
    chunks: list[dict[str, Any] | tuple[Any, ...]] | None = None,
    *,
    run_id: str | None = None,
) -> int:
    """Replace the scoped rows with batches: frames of an iterable, or the query run once per
    parameters in `chunks` (see `query_chunks`). Each batch is appended to a staging table (in
    a scratch database, `staging_database`) and committed on its own; then one transaction
    deletes the scope and copies the staged rows in. Returns the rows written.

    Memory stays that of one batch however long the range, but for the final copy (~40 MB per
    million rows). Appending every batch inside the replacing transaction would hold them all:
    DuckDB keeps what an open transaction appended from a frame until it commits (~45 MB per
    200k bars). A committed batch costs nothing once its blocks are evicted: `release_cache`
    evicts whenever DuckDB holds more than `EVICT_ABOVE_BYTES`, so memory stays that threshold
    plus one batch without an eviction after every batch.
    All batches are computed before anything is deleted, so a query may still read the table it
    replaces; a failure anywhere leaves the table as it was. The staging table is created and
    filled in earlier transactions than the copy (the DuckDB 2.0.0 loss in `write_table` needs
    one transaction), and the copied count must equal the staged one anyway."""
    cols = ", ".join(contract.column_names)
    where, where_params = scope_sql(contract, bounds, write.tickers)
    stage = f"{STAGE_DATABASE}.main.{contract.schema}__{contract.name}"
    with staging_database(con):
        con.execute(contract.ddl(table=stage))
        staged = _stage(con, write, chunks, stage, cols)
        _scope_check(con, contract, stage, where, where_params, bounds, write.tickers)
        # Never inside the transaction: a limit DuckDB cannot meet there aborts it.
        release_cache(con)
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(f"DELETE FROM {contract.table} WHERE {where}", where_params)
            written = con.execute(
                f"INSERT INTO {contract.table} ({cols}) SELECT {cols} FROM {stage}"
            ).fetchall()[0][0]
            if written != staged:
                raise dg.Failure(
                    f"{contract.table}: staged {staged} rows but copied {written}; rolled back"
                )
            _check_present(con, contract, where, where_params, written)
            record_change(
                con, contract.table, _scoped(contract, bounds), _tickers(contract, write), run_id
            )
            fault_point("warehouse.replace")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return int(written)


@contextmanager
def staging_database(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """A scratch database attached as `STAGE_DATABASE`: a file next to the warehouse (in memory
    for an in-memory warehouse), detached and removed afterwards, also on error. One warehouse
    writer at a time (the warehouse pool), so one scratch file; a leftover of a killed process is
    replaced."""
    path = con.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchall()[0][0]
    scratch = Path(f"{path}.pending") if path else None
    files = [scratch, scratch.with_name(scratch.name + ".wal")] if scratch else []
    for file in files:
        file.unlink(missing_ok=True)
    target = str(scratch).replace("'", "''") if scratch else ":memory:"
    con.execute(f"ATTACH '{target}' AS {STAGE_DATABASE}")
    try:
        yield
    finally:
        con.execute(f"DETACH {STAGE_DATABASE}")
        for file in files:
            file.unlink(missing_ok=True)


def _stage(
    con: duckdb.DuckDBPyConnection,
    write: TableWrite,
    chunks: list[dict[str, Any] | tuple[Any, ...]] | None,
    stage: str,
    cols: str,
) -> int:
    """Append the batches to `stage`, each in its own transaction; returns the rows staged."""
    if isinstance(write.rows, str):
        return _stage_query(con, write, chunks or [write.params], stage, cols)
    staged = 0
    for batch in write.rows:
        con.register("_batch", batch)
        inserted = con.execute(f"INSERT INTO {stage} ({cols}) SELECT {cols} FROM _batch")
        staged += inserted.fetchall()[0][0]
        con.unregister("_batch")
        del batch  # before the iterator builds the next one
        release_cache(con, above=EVICT_ABOVE_BYTES)
        fault_point("warehouse.staging")
    return staged


def query_chunks(
    write: TableWrite, bounds: tuple[dt.date, dt.date] | None
) -> list[dict[str, Any] | tuple[Any, ...]]:
    """The parameters of each run of a SQL write: one per chunk of sessions with
    `chunk_sessions`, else just `write.params`."""
    if write.chunk_sessions is None or bounds is None:
        return [write.params]
    if not (isinstance(write.params, dict) and {"start", "end"} <= write.params.keys()):
        raise dg.Failure(
            "a TableWrite with chunk_sessions binds each chunk's dates to $start and $end: "
            f"give its params as a dict with those keys (got {write.params!r})"
        )
    chunks = session_chunks(bounds, write.chunk_sessions)
    if len(chunks) == 1:
        return [write.params]
    return [{**write.params, "start": first, "end": last} for first, last in chunks]


def _stage_query(
    con: duckdb.DuckDBPyConnection,
    write: TableWrite,
    chunks: list[dict[str, Any] | tuple[Any, ...]],
    stage: str,
    cols: str,
) -> int:
    """Append the query's rows to `stage`, one statement (and transaction) per chunk's
    parameters; returns the rows staged."""
    assert isinstance(write.rows, str)
    for name, frame in write.frames.items():
        con.register(name, frame)
    try:
        staged = 0
        for params in chunks:
            staged += con.execute(
                f"INSERT INTO {stage} ({cols}) SELECT {cols} FROM ({write.rows})", params
            ).fetchall()[0][0]
            release_cache(con, above=EVICT_ABOVE_BYTES)
            fault_point("warehouse.staging")
    finally:
        for name in write.frames:
            con.unregister(name)
    return staged


def _text_as_arrow(dtype: pa.DataType) -> pd.ArrowDtype | None:
    return (
        pd.ArrowDtype(dtype)
        if pa.types.is_string(dtype) or pa.types.is_large_string(dtype)
        else None
    )


def query_frame(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    params: dict[str, Any] | None = None,
    *,
    arrow_text: bool = False,
) -> pd.DataFrame:
    """The query's rows as a DataFrame, through Arrow: about twice as fast as `.df()` on wide
    results. Dates come as datetime64 (as from `.df()`); with `arrow_text`, text columns stay
    Arrow strings (`string[pyarrow]`) instead of Python objects, for frames whose text only
    passes through pandas on its way back into DuckDB. DECIMALs become float64, as `.df()` has
    them (Arrow would give Python Decimal objects)."""
    table = con.sql(sql, params=params).to_arrow_table()
    if any(pa.types.is_decimal(f.type) for f in table.schema):
        table = table.cast(
            pa.schema(
                f.with_type(pa.float64()) if pa.types.is_decimal(f.type) else f
                for f in table.schema
            )
        )
    return table.to_pandas(
        types_mapper=_text_as_arrow if arrow_text else None, date_as_object=False
    )


def table_metadata(
    con: duckdb.DuckDBPyConnection,
    contract: TableContract,
    where: str,
    params: list[Any],
    *,
    detailed: bool,
) -> dict[str, Any]:
    total = con.execute(f"SELECT count(*) FROM {contract.table}").fetchall()[0][0]
    metadata: dict[str, Any] = {
        "dagster/table_name": f"warehouse.{contract.table}",
        # On every materialization: Dagster's column-schema change checks compare consecutive ones.
        "dagster/column_schema": contract.column_schema(),
        "table_rows_total": dg.MetadataValue.int(int(total)),
    }
    if detailed:
        order = ", ".join(contract.key) if contract.key else "1"
        preview = con.execute(
            f"SELECT * FROM {contract.table} WHERE {where} ORDER BY {order} LIMIT {PREVIEW_ROWS}",
            params,
        ).df()
        metadata["preview"] = dg.MetadataValue.md(
            preview.to_markdown(index=False) if not preview.empty else "_no rows_"
        )
    return metadata


def read_table(
    con: duckdb.DuckDBPyConnection, contract: TableContract, bounds: tuple[dt.date, dt.date] | None
) -> pd.DataFrame:
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [contract.schema, contract.name],
    ).fetchone()[0]
    if not exists:
        raise dg.Failure(
            f"{contract.table} does not exist yet: materialize {contract.asset_key.to_user_string()} first"
        )
    where, params = scope_sql(contract, bounds, None)
    order = ", ".join(contract.key) if contract.key else "1"
    return con.execute(
        f"SELECT * FROM {contract.table} WHERE {where} ORDER BY {order}", params
    ).df()


def read_uncontracted(
    con: duckdb.DuckDBPyConnection, key: dg.AssetKey, bounds: tuple[dt.date, dt.date] | None
) -> pd.DataFrame:
    """`schema.table` named by the asset key; a partition slice filters on `session_date`."""
    schema, name = key.path[0], key.path[-1]
    columns = [
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
            [schema, name],
        ).fetchall()
    ]
    if not columns:
        raise dg.Failure(
            f"{schema}.{name} does not exist yet: materialize {key.to_user_string()} first"
        )
    where, params = "TRUE", []
    if bounds is not None and "session_date" in columns:
        where, params = "session_date BETWEEN ? AND ?", list(bounds)
    return con.execute(f'SELECT * FROM {schema}."{name}" WHERE {where}', params).df()


class WarehouseIOManager(dg.ConfigurableIOManager):
    """Writes `TableWrite`s to, and loads slices from, the table named by the asset key."""

    warehouse: dg.ResourceDependency[WarehouseResource]

    def handle_output(self, context: dg.OutputContext, obj: TableWrite | None) -> None:
        if obj is None:
            return
        if not isinstance(obj, TableWrite):
            raise dg.Failure(
                f"{context.asset_key.to_user_string()} must return a TableWrite, got {type(obj).__name__}"
            )
        contract = contract_for(context.asset_key)
        bounds = session_bounds(context)
        with self.warehouse.get_connection() as con:
            written = write_table(con, contract, obj, bounds, run_id=context.run_id)
            where, params = scope_sql(contract, bounds, obj.tickers)
            # A range run records this metadata on every partition's materialization (2,520 of
            # them for 10 years): the preview only goes with single-session writes.
            detailed = bounds is None or bounds[0] == bounds[1]
            metadata = table_metadata(con, contract, where, params, detailed=detailed)
        context.add_output_metadata(
            {
                "dagster/row_count": dg.MetadataValue.int(written),
                "tickers_scope": "all" if obj.tickers is None else ", ".join(obj.tickers),
                **metadata,
                **obj.metadata,
            }
        )

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        bounds = session_bounds(context)
        with self.warehouse.get_connection() as con:
            if ".".join(context.asset_key.path) in CONTRACTS:
                return read_table(con, contract_for(context.asset_key), bounds)
            # Tables built outside Python (dbt marts) have no contract here: same layout rules.
            return read_uncontracted(con, context.asset_key, bounds)
