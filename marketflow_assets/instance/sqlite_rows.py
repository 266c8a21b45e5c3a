"""Many rows into one SQLite table through the driver's `executemany`, ids included.

Why: a range run's batch holds thousands of event rows (one per asset and session) and as many
data-version tag rows. SQLAlchemy sends them as multi-row INSERTs, but prepares every row in
Python first (each parameter through its type's bind processor: a `DateTime` is formatted per
row), ~40 us a row: a tenth of what a per-session materialization costs the run. sqlite3's
`executemany` binds the same rows in C.

The rows must hold exactly what SQLAlchemy would write: the values are the same Python values
(text, integers, None) but datetimes, which SQLAlchemy's SQLite `DATETIME` stores as text in its
fixed format (`_DATETIME_FORMAT`, the default `storage_format`; `test_sqlite_rows.py` reads the
rows back through SQLAlchemy and compares them with its own inserts). Ids: SQLite gives each
inserted row of an `INTEGER PRIMARY KEY` table (a rowid table) one more than the table's largest
rowid, so the rows of one statement, in one write transaction, get consecutive ids ending at
`last_insert_rowid()`; that is checked, not assumed (`inserted_ids`).

Only for SQLite connections (`applies`); other dialects keep SQLAlchemy's path.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as db

_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's SQLite DATETIME storage format
# Datetime types SQLAlchemy stores in that format on SQLite (Dagster's tables use both).
_PLAIN = (db.DateTime, db.TIMESTAMP)


def applies(conn: db.Connection, table: db.Table) -> bool:
    """Whether `insert` can write this table on this connection: SQLite, and every datetime
    column a plain `DateTime` or `TIMESTAMP` (stored in SQLAlchemy's default text format)."""
    if conn.dialect.name != "sqlite":
        return False
    for column in table.columns:
        kind = column.type
        if isinstance(kind, db.TypeDecorator):  # its own bind processing
            return False
        if isinstance(kind, db.DateTime | db.Date | db.Time) and type(kind) not in _PLAIN:
            return False
    return True


def _value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:  # SQLAlchemy's SQLite DATETIME drops it the same way
            value = value.replace(tzinfo=None)
        return value.strftime(_DATETIME_FORMAT)
    return value


def insert(conn: db.Connection, table: db.Table, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT `rows` (dicts with the same keys) into `table` with one `executemany`."""
    if not rows:
        return
    columns = list(rows[0])
    unknown = [c for c in columns if c not in table.c]
    if unknown:
        raise ValueError(f"{table.name} has no column(s) {unknown}")
    names = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" for _ in columns)
    statement = f'INSERT INTO "{table.name}" ({names}) VALUES ({marks})'
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.executemany(statement, [tuple(_value(row[c]) for c in columns) for row in rows])
    finally:
        cursor.close()


def inserted_ids(conn: db.Connection, table: db.Table, count: int) -> list[int]:
    """The ids of the `count` rows the last `insert` into `table` wrote on this connection."""
    last = conn.exec_driver_sql("SELECT last_insert_rowid()").scalar_one()
    first = last - count + 1
    (key,) = table.primary_key.columns
    found = conn.execute(
        db.select(db.func.count()).select_from(table).where(key.between(first, last))
    ).scalar_one()
    if count == 0 or found != count:
        raise RuntimeError(
            f"{table.name}: the {count} rows just inserted do not have consecutive ids "
            f"ending at {last}"
        )
    return list(range(first, last + 1))
