"""Which warehouse tables a snapshot serves, and how each is cut into parts for incremental
publishing.

A *part* is the unit a publish replaces: (ticker, month) for daily tables with a ticker,
(ticker, session) for the intraday tables, a month for tables without a ticker, the whole table
for tables without a session date. A re-adjusted ticker (a split back-adjusts its whole history)
then rewrites that ticker's rows only, and a one-session increment rewrites one month per ticker.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

SERVED_SCHEMAS = ("silver", "gold")
EXTRA_TABLES = (("ops", "check_results"),)
INTRADAY_SESSIONS = 5
"""Sessions of intraday tables (one-minute bars, VWAP, ...) a snapshot keeps: the recent week.
The warehouse keeps what the provider's 30-day window gave; the API serves the recent ones."""
WHOLE_TABLE_PART = "DATE '1970-01-01'"


@dataclass(frozen=True)
class ServedTable:
    schema: str
    name: str
    columns: tuple[tuple[str, str], ...]  # (name, type) in the warehouse's order

    @property
    def qualified(self) -> str:
        return f'{self.schema}."{self.name}"'

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.columns)

    @property
    def has_ticker(self) -> bool:
        return "ticker" in self.column_names

    @property
    def has_session(self) -> bool:
        return "session_date" in self.column_names

    @property
    def intraday(self) -> bool:
        return "intraday" in self.name and self.has_session

    def part_expr(self, alias: str = "t") -> str:
        """SQL for a row's part date (month start, session, or a constant for the whole table)."""
        if not self.has_session:
            return WHOLE_TABLE_PART
        if self.intraday:
            return f"{alias}.session_date"
        return f"CAST(date_trunc('month', {alias}.session_date) AS DATE)"

    def ticker_expr(self, alias: str = "t") -> str:
        return f"{alias}.ticker" if self.has_ticker else "CAST(NULL AS VARCHAR)"

    def order_by(self) -> str:
        keys = [k for k in ("ticker", "session_date", "ts") if k in self.column_names]
        return ", ".join(keys) or "ALL"

    def source_sql(self, catalog: str = "") -> str:
        """The rows to serve from `catalog` (the warehouse when empty): intraday tables are cut
        to their latest `INTRADAY_SESSIONS` sessions."""
        table = f"{catalog + '.' if catalog else ''}{self.qualified}"
        if not self.intraday:
            return f"SELECT * FROM {table}"
        return (
            f"SELECT * FROM {table} WHERE session_date >= (SELECT min(d) FROM "
            f"(SELECT DISTINCT session_date AS d FROM {table} ORDER BY d DESC "
            f"LIMIT {INTRADAY_SESSIONS}))"
        )

    def parquet_partition(self) -> tuple[str, str] | None:
        """(hive key, SQL value) the Parquet copy is partitioned by, or None (one file)."""
        if not self.has_session:
            return None
        if self.intraday:
            return "session_date", "session_date"
        return "session_month", "strftime(session_date, '%Y-%m')"


def served_tables(con: duckdb.DuckDBPyConnection, catalog: str | None = None) -> list[ServedTable]:
    """Tables of `catalog` (default: the connection's database) that a snapshot serves."""
    db = catalog or con.execute("SELECT current_database()").fetchone()[0]
    rows = con.execute(
        "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_catalog = ? AND (table_schema IN (SELECT unnest(?)) "
        "OR (table_schema, table_name) IN (SELECT (s, n) FROM (SELECT unnest(?) AS s, unnest(?) AS n))) "
        "AND (table_schema, table_name) IN (SELECT (schema_name, table_name) FROM duckdb_tables() "
        "WHERE database_name = ?) ORDER BY table_schema, table_name, ordinal_position",
        [
            db,
            list(SERVED_SCHEMAS),
            [s for s, _ in EXTRA_TABLES],
            [n for _, n in EXTRA_TABLES],
            db,
        ],
    ).fetchall()
    tables: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for schema, name, column, kind in rows:
        if not name.startswith("_"):
            tables.setdefault((schema, name), []).append((column, kind))
    return [ServedTable(s, n, tuple(cols)) for (s, n), cols in tables.items()]
