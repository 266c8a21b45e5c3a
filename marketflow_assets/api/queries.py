"""Pages of a snapshot table: keyset pagination, JSON serialised by DuckDB, CSV and Parquet
through Arrow. Every value a client sends reaches SQL as a bound parameter; identifiers come
from the snapshot's own catalog or from fixed lists, never from the request."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import io
import json
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from marketflow_assets.api.errors import ApiError

TIMESTAMP_TYPES = ("TIMESTAMP WITH TIME ZONE", "TIMESTAMP")
FLOAT_TYPES = ("DOUBLE", "FLOAT", "REAL")


@dataclass
class PageQuery:
    """Rows of `table` in key order. `columns` are (output name, source column)."""

    table: str
    columns: list[tuple[str, str]]
    keys: list[str]  # output names, the keyset order (unique together within the filter)
    key_types: list[str]  # "date" | "ts" | "str"
    cursor_kind: str  # cursors of one endpoint are not accepted by another
    where: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)
    limit: int | None = None
    cursor: str | None = None


@dataclass
class Page:
    body: bytes
    next_cursor: str | None
    rows: int


def json_expr(source: str, kind: str) -> str:
    """A column as DuckDB's `to_json` should render it for the API: timestamps as RFC 3339
    in UTC, non-finite floats as null (JSON has no NaN)."""
    if kind == "TIMESTAMP WITH TIME ZONE":
        return f"strftime({source} AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%SZ')"
    if kind == "TIMESTAMP":
        return f"strftime({source}, '%Y-%m-%dT%H:%M:%SZ')"
    if kind in FLOAT_TYPES:
        return f"CASE WHEN isfinite({source}) THEN {source} END"
    return source


def _types(columns: dict[str, list[tuple[str, str]]], table: str) -> dict[str, str]:
    return dict(columns[table])


def _select(q: PageQuery, types: dict[str, str], *, as_json: bool) -> str:
    parts = []
    for out, src in q.columns:
        expr = json_expr(f'"{src}"', types[src]) if as_json else f'"{src}"'
        parts.append(f'{expr} AS "{out}"')
    return ", ".join(parts)


def _where(q: PageQuery, types: dict[str, str]) -> tuple[str, list[Any]]:
    where, params = list(q.where), list(q.params)
    if q.cursor is not None:
        values = decode_cursor(q.cursor, q.cursor_kind, q.key_types)
        sources = dict(q.columns)
        terms = []
        for i, key in enumerate(q.keys):
            eq = [f'"{sources[k]}" = ?' for k in q.keys[:i]]
            terms.append("(" + " AND ".join([*eq, f'"{sources[key]}" > ?']) + ")")
            params += [*values[:i], values[i]]
        where.append("(" + " OR ".join(terms) + ")")
    return (" WHERE " + " AND ".join(where)) if where else "", params


def _order(q: PageQuery) -> str:
    sources = dict(q.columns)
    return ", ".join(f'"{sources[k]}"' for k in q.keys)


def fetch_json(cur: duckdb.DuckDBPyConnection, q: PageQuery, columns: dict) -> Page:
    types = _types(columns, q.table)
    where, params = _where(q, types)
    limit = f" LIMIT {int(q.limit) + 1}" if q.limit is not None else ""
    keys = ", ".join(f'q."{k}"' for k in q.keys)
    sql = (
        f"SELECT to_json(q), {keys} FROM (SELECT {_select(q, types, as_json=True)} "
        f"FROM {q.table}{where} ORDER BY {_order(q)}{limit}) q ORDER BY {keys}"
    )
    rows = cur.execute(sql, params).fetchall()
    more = q.limit is not None and len(rows) > q.limit
    if more:
        rows = rows[: q.limit]
    next_cursor = encode_cursor(q.cursor_kind, rows[-1][1:]) if more else None
    return Page(("[" + ",".join(r[0] for r in rows) + "]").encode(), next_cursor, len(rows))


def fetch_arrow(
    cur: duckdb.DuckDBPyConnection, q: PageQuery, columns: dict
) -> tuple[pa.Table, str | None]:
    types = _types(columns, q.table)
    where, params = _where(q, types)
    limit = f" LIMIT {int(q.limit) + 1}" if q.limit is not None else ""
    sql = (
        f"SELECT {_select(q, types, as_json=False)} FROM {q.table}{where} "
        f"ORDER BY {_order(q)}{limit}"
    )
    table = cur.sql(sql, params=params).to_arrow_table()  # no extra copy of the rows
    next_cursor = None
    if q.limit is not None and table.num_rows > q.limit:
        table = table.slice(0, q.limit)
        last = [table.column(k)[q.limit - 1].as_py() for k in q.keys]
        next_cursor = encode_cursor(q.cursor_kind, last)
    return table, next_cursor


def to_csv(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pa_csv.write_csv(table, buf)
    return buf.getvalue()


def to_parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def fetch_one_json(
    cur: duckdb.DuckDBPyConnection,
    table: str,
    columns: dict,
    select: list[str],
    where: str,
    params: list,
    order: str = "",
) -> str | None:
    """One row as a JSON object (or None)."""
    types = _types(columns, table)
    exprs = ", ".join(f'{json_expr(f"{chr(34)}{c}{chr(34)}", types[c])} AS "{c}"' for c in select)
    row = cur.execute(
        f"SELECT to_json(q) FROM (SELECT {exprs} FROM {table} WHERE {where}{order} LIMIT 1) q",
        params,
    ).fetchone()
    return row[0] if row else None


# -- cursors ----------------------------------------------------------------------------------
def _key_text(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def encode_cursor(kind: str, values: Any) -> str:
    raw = json.dumps([kind, *(_key_text(v) for v in values)], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str, key_types: list[str]) -> list[Any]:
    """The key values of an opaque cursor, typed; a cursor from elsewhere is a 400."""
    bad = ApiError(
        400,
        "cursor",
        "invalid cursor: pass the next_cursor of a previous page of the same endpoint",
    )
    if len(cursor) > 512:
        raise bad
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise bad from exc
    if not isinstance(decoded, list) or len(decoded) != len(key_types) + 1 or decoded[0] != kind:
        raise bad
    values: list[Any] = []
    try:
        for text, key_type in zip(decoded[1:], key_types, strict=True):
            if not isinstance(text, str):
                raise bad
            if key_type == "date":
                values.append(dt.date.fromisoformat(text))
            elif key_type == "ts":
                values.append(dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
            else:
                values.append(text)
    except ValueError as exc:
        raise bad from exc
    return values
