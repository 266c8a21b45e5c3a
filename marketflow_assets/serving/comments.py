"""Table and column descriptions from the contracts, written into a snapshot as DuckDB comments
(`COMMENT ON`), so any reader (SQL Lab, a notebook's `DESCRIBE`, `duckdb_columns()`) sees what a
column means without the repo at hand. Applied at the end of a publish to the tables it created
(a rebuilt table, `CREATE OR REPLACE`, has lost its comments; an incremental one keeps them)."""

from __future__ import annotations

from collections.abc import Collection

import duckdb

from marketflow_assets.serving.columns import served_table
from marketflow_assets.serving.tables import served_tables


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def comment_served_tables(
    con: duckdb.DuckDBPyConnection, catalog: str, only: Collection[str] | None = None
) -> int:
    """Comment every served table of `catalog` (or those of them named in `only`, as
    `schema.table`) that has a contract, and each of its columns the contract describes; returns
    the number of columns commented. Tables without a contract are left as they are (their
    columns have no description to give). One transaction: each `COMMENT ON` committed on its
    own would sync the snapshot's write-ahead log once per column (~230 syncs per full publish)."""
    commented = 0
    con.execute("BEGIN TRANSACTION")
    try:
        commented = _comment(con, catalog, only)
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
    return commented


def _comment(con: duckdb.DuckDBPyConnection, catalog: str, only: Collection[str] | None) -> int:
    commented = 0
    for table in served_tables(con, catalog):
        if only is not None and f"{table.schema}.{table.name}" not in only:
            continue
        try:
            contract = served_table(f"{table.schema}.{table.name}")
        except KeyError:
            continue
        target = f"{catalog}.{table.qualified}"
        if contract.description:
            con.execute(f"COMMENT ON TABLE {target} IS {_literal(contract.description)}")
        present = set(table.column_names)
        for column in contract.columns:
            if column.name in present and column.description:
                con.execute(
                    f'COMMENT ON COLUMN {target}."{column.name}" IS {_literal(column.description)}'
                )
                commented += 1
    return commented
