"""The DuckDB warehouse: connections, and the IO manager that owns every table write.

Warehouse assets return a `TableWrite` (a SELECT over warehouse tables, or a DataFrame). The IO
manager replaces exactly the rows the run owns, in one transaction:

    DELETE rows of the run's sessions [and tickers];  INSERT the new rows;  COMMIT

so a re-materialized partition is replaced, other partitions are never touched, a run
restricted to some tickers never deletes other tickers' rows, and a failure leaves the previous
rows in place. Rows outside the run's scope are a bug in the asset and fail the write.
The same IO manager loads any table slice by asset key and partition (`load_asset_value`).
"""

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pandas as pd
from dagster_duckdb import DuckDBResource

from marketflow_assets.contracts import CONTRACTS, TableContract, contract_for

PREVIEW_ROWS = 5


class WarehouseResource(DuckDBResource):
    """DuckDB warehouse file. Connections always close (also on error), so the file is free
    for the next process (dbt runs as a subprocess)."""

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self.database != ":memory:":
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        with super().get_connection() as con:
            try:
                con.execute("SET TimeZone = 'UTC'")
                yield con
            finally:
                con.close()


@dataclass(frozen=True)
class TableWrite:
    """The rows of the partitions (and tickers) a run owns."""

    # A SELECT over warehouse tables, a frame with the contract's columns, or an iterator of
    # such frames (batches: bounded memory however many sessions a run covers).
    rows: str | pd.DataFrame | Iterator[pd.DataFrame]
    params: dict[str, Any] | tuple[Any, ...] = ()
    tickers: tuple[str, ...] | None = None  # replace only these tickers' rows; None = all
    metadata: dict[str, Any] = field(default_factory=dict)
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)  # registered for `rows` SQL


def ensure_table(con: duckdb.DuckDBPyConnection, contract: TableContract) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {contract.schema}")
    con.execute(contract.ddl())
    existing = {
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
            [contract.schema, contract.name],
        ).fetchall()
    }
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
    rejected-rows query reads bronze intraday before any intraday run)."""
    for contract in CONTRACTS.values():
        ensure_table(con, contract)


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


def write_table(
    con: duckdb.DuckDBPyConnection,
    contract: TableContract,
    write: TableWrite,
    bounds: tuple[dt.date, dt.date] | None,
) -> int:
    """Replace the scoped rows of a table with `write.rows` in one transaction; returns rows
    written. Before committing, the rows now in scope must be exactly the rows written.

    DuckDB 2.0.0 silently copies 0 rows out of a table that was created empty and then filled by
    one INSERT of more than a row group (122,880 rows) in the same transaction. So frames are
    inserted straight into the target, SQL results are staged with CREATE TABLE AS (unaffected),
    and the count check turns any such loss into a failed, rolled-back write."""
    ensure_all_tables(con)
    cols = ", ".join(contract.column_names)
    where, where_params = scope_sql(contract, bounds, write.tickers)

    def insert(relation: str) -> int:
        outside = con.execute(
            f"SELECT count(*) FROM {relation} WHERE NOT ({where})", where_params
        ).fetchall()[0][0]
        if outside:
            raise dg.Failure(
                f"{contract.table}: {outside} row(s) fall outside the run's scope "
                f"(sessions {bounds}, tickers {write.tickers}); refusing to write them"
            )
        return con.execute(
            f"INSERT INTO {contract.table} ({cols}) SELECT {cols} FROM {relation}"
        ).fetchall()[0][0]

    con.execute("BEGIN TRANSACTION")
    try:
        written = 0
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
            for batch in [write.rows] if isinstance(write.rows, pd.DataFrame) else write.rows:
                con.register("_batch", batch)
                written += insert("_batch")
                con.unregister("_batch")
        present = con.execute(
            f"SELECT count(*) FROM {contract.table} WHERE {where}", where_params
        ).fetchall()[0][0]
        if present != written:
            raise dg.Failure(
                f"{contract.table}: wrote {written} rows but {present} are in scope; rolled back"
            )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return int(written)


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
            written = write_table(con, contract, obj, bounds)
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
