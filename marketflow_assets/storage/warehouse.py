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
    """Replace the scoped rows of a table with `write.rows` in one transaction; returns rows written."""
    ensure_all_tables(con)
    cols = ", ".join(contract.column_names)
    where, where_params = scope_sql(contract, bounds, write.tickers)
    con.execute("BEGIN TRANSACTION")
    try:
        if isinstance(write.rows, str):
            for name, frame in write.frames.items():
                con.register(name, frame)
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE _stage AS SELECT {cols} FROM ({write.rows})",
                write.params,
            )
            for name in write.frames:
                con.unregister(name)
        else:
            batches = [write.rows] if isinstance(write.rows, pd.DataFrame) else write.rows
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE _stage AS SELECT {cols} FROM {contract.table} LIMIT 0"
            )
            for batch in batches:
                con.register("_batch", batch)
                con.execute(f"INSERT INTO _stage SELECT {cols} FROM _batch")
                con.unregister("_batch")
        outside = con.execute(
            f"SELECT count(*) FROM _stage WHERE NOT ({where})", where_params
        ).fetchone()[0]
        if outside:
            raise dg.Failure(
                f"{contract.table}: {outside} row(s) fall outside the run's scope "
                f"(sessions {bounds}, tickers {write.tickers}); refusing to write them"
            )
        con.execute(f"DELETE FROM {contract.table} WHERE {where}", where_params)
        written = con.execute(
            f"INSERT INTO {contract.table} ({cols}) SELECT {cols} FROM _stage"
        ).fetchone()[0]
        con.execute("DROP TABLE _stage")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return int(written)


def table_metadata(
    con: duckdb.DuckDBPyConnection, contract: TableContract, where: str, params: list[Any]
) -> dict[str, Any]:
    total = con.execute(f"SELECT count(*) FROM {contract.table}").fetchone()[0]
    order = ", ".join(contract.key) if contract.key else "1"
    preview = con.execute(
        f"SELECT * FROM {contract.table} WHERE {where} ORDER BY {order} LIMIT {PREVIEW_ROWS}",
        params,
    ).df()
    return {
        "dagster/table_name": f"warehouse.{contract.table}",
        "dagster/column_schema": contract.column_schema(),
        "table_rows_total": dg.MetadataValue.int(int(total)),
        "preview": dg.MetadataValue.md(
            preview.to_markdown(index=False) if not preview.empty else "_no rows_"
        ),
    }


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
            metadata = table_metadata(con, contract, where, params)
        context.add_output_metadata(
            {
                "dagster/row_count": dg.MetadataValue.int(written),
                "tickers_scope": "all" if obj.tickers is None else ", ".join(obj.tickers),
                **metadata,
                **obj.metadata,
            }
        )

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        contract = contract_for(context.asset_key)
        with self.warehouse.get_connection() as con:
            return read_table(con, contract, session_bounds(context))
