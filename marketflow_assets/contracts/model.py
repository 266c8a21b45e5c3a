"""Table contracts: one definition per warehouse table, from which everything else is derived.

A `TableContract` lists each column once (DuckDB type, nullability, value rules as pandera
checks, a description). From it come:
- the DDL that creates the table (`ddl`),
- the pandera schema the contract asset check validates against (`pandera_schema`),
- the `dagster/column_schema` metadata shown in the UI (`column_schema`),
- the README's table reference (`marketflow_assets.contracts.docs`).
Nothing about a table's shape is written anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg
import pandas as pd
import pandera.pandas as pa

# How DuckDB hands each type to pandas (duckdb >= 1.1, session TimeZone = UTC).
_PANDAS_DTYPES = {
    "VARCHAR": "object",
    "DOUBLE": "float64",
    "BIGINT": "int64",
    "INTEGER": "int32",
    "BOOLEAN": "bool",
    "DATE": "datetime64[us]",
    "TIMESTAMPTZ": pd.DatetimeTZDtype("us", "UTC"),
}
_NULLABLE_INTS = {"BIGINT": "Int64", "INTEGER": "Int32", "BOOLEAN": "boolean"}


@dataclass(frozen=True)
class Col:
    name: str
    sql_type: str
    description: str
    nullable: bool = False
    checks: tuple[pa.Check, ...] = ()

    @property
    def pandas_dtype(self):
        if self.nullable and self.sql_type in _NULLABLE_INTS:
            return _NULLABLE_INTS[self.sql_type]
        return _PANDAS_DTYPES[self.sql_type]


@dataclass(frozen=True)
class TableContract:
    table: str  # "schema.name", equal to the asset key path
    description: str
    columns: tuple[Col, ...]
    key: tuple[str, ...]  # columns that identify a row (unique unless `key_unique` is False)
    partition_column: str | None = "session_date"
    ticker_column: str | None = "ticker"
    key_unique: bool = True
    frame_checks: tuple[pa.Check, ...] = field(default=())

    @property
    def schema(self) -> str:
        return self.table.split(".")[0]

    @property
    def name(self) -> str:
        return self.table.split(".")[1]

    @property
    def asset_key(self) -> dg.AssetKey:
        return dg.AssetKey([self.schema, self.name])

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Col:
        return next(c for c in self.columns if c.name == name)

    def empty_frame(self) -> pd.DataFrame:
        """No rows, the contract's columns with the dtypes DuckDB hands to pandas (so SQL over an
        empty frame still has the table's types)."""
        return pd.DataFrame({c.name: pd.Series(dtype=c.pandas_dtype) for c in self.columns})

    def ddl(self, table: str | None = None) -> str:
        """CREATE TABLE IF NOT EXISTS for this table (or another one of the same shape, e.g. a
        staging table)."""
        cols = ",\n  ".join(
            f"{c.name} {c.sql_type}{'' if c.nullable else ' NOT NULL'}" for c in self.columns
        )
        return f"CREATE TABLE IF NOT EXISTS {table or self.table} (\n  {cols}\n)"

    def pandera_schema(self) -> pa.DataFrameSchema:
        return pa.DataFrameSchema(
            {
                c.name: pa.Column(
                    c.pandas_dtype,
                    checks=list(c.checks),
                    nullable=c.nullable,
                    description=c.description,
                )
                for c in self.columns
            },
            checks=list(self.frame_checks),
            strict=True,
            ordered=False,
            unique=list(self.key) if self.key and self.key_unique else None,
            name=self.table,
            description=self.description,
        )

    def asset_metadata(self) -> dict[str, object]:
        """Definition metadata for the asset writing this table: the UI shows the schema before
        the first materialization too."""
        return {
            "dagster/column_schema": self.column_schema(),
            "dagster/table_name": f"warehouse.{self.table}",
        }

    def column_schema(self) -> dg.TableSchema:
        return dg.TableSchema(
            columns=[
                dg.TableColumn(
                    name=c.name,
                    type=c.sql_type,
                    description=c.description,
                    constraints=dg.TableColumnConstraints(
                        nullable=c.nullable,
                        unique=self.key == (c.name,) and self.key_unique,
                        other=[check.error or check.name for check in c.checks if check.name],
                    ),
                )
                for c in self.columns
            ],
            constraints=dg.TableConstraints(
                other=[
                    f"key: ({', '.join(self.key)})" + ("" if self.key_unique else " (not unique)")
                ]
            ),
        )
