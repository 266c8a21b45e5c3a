"""The warehouse's change journal, `ops.table_changes`: one row per table write, naming the scope
the write replaced (sessions, tickers), recorded by the shared writer (`warehouse.write_table`)
in the same transaction as the rows, so a committed write always has its journal row and a
rolled-back one never does.

Readers of the journal (the snapshot publisher) remember the last change they consumed (its
`change_id` and `change_uid`) and later read only the newer changes, whoever made them: a run
that did not publish, a ticker-restricted re-adjustment, a backfill. The uid detects a journal
that is not the one the watermark came from (a restored or rebuilt warehouse): then a reader
must not trust the journal and compares everything instead.

The journal stays small: once the current snapshot is in line with a watermark, `prune` drops
the changes before it (each table's newest change stays, so `journaled_tables` still names it).
A reader holding an older watermark (an older snapshot made current by hand) then finds its
change gone and compares everything: slower, never wrong.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import duckdb

JOURNAL = "ops.table_changes"
DDL = f"""
CREATE TABLE IF NOT EXISTS {JOURNAL} (
    change_id BIGINT NOT NULL,
    change_uid VARCHAR NOT NULL,
    table_name VARCHAR NOT NULL,
    first_session DATE,
    last_session DATE,
    tickers VARCHAR[],
    run_id VARCHAR,
    changed_at TIMESTAMPTZ NOT NULL
)
"""
"""`first_session`/`last_session` NULL: every session (an unpartitioned table); `tickers` NULL:
every ticker. `change_id` increases by one per write (one writer at a time: the warehouse
lock)."""


@dataclass(frozen=True)
class Watermark:
    change_id: int
    change_uid: str


@dataclass(frozen=True)
class Change:
    table_name: str
    first_session: dt.date | None
    last_session: dt.date | None
    tickers: tuple[str, ...] | None


def ensure_journal(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS ops")
    con.execute(DDL)


def record_change(
    con: duckdb.DuckDBPyConnection,
    table: str,
    bounds: tuple[dt.date, dt.date] | None,
    tickers: tuple[str, ...] | None,
    run_id: str | None,
) -> None:
    """Journal a write of `table` (call inside the write's transaction)."""
    first, last = bounds if bounds is not None else (None, None)
    con.execute(
        f"INSERT INTO {JOURNAL} SELECT coalesce(max(change_id), 0) + 1, ?, ?, ?, ?, ?, ?, "
        f"now() FROM {JOURNAL}",
        [
            uuid.uuid4().hex,
            table,
            first,
            last,
            list(tickers) if tickers is not None else None,
            run_id,
        ],
    )


BEFORE_ANY_CHANGE = Watermark(0, "")


def journal_exists(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(
        con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = 'ops' AND table_name = 'table_changes'"
        ).fetchone()[0]
    )


def current_watermark(con: duckdb.DuckDBPyConnection) -> Watermark:
    """The newest change (`BEFORE_ANY_CHANGE` while the journal is empty or absent)."""
    if not journal_exists(con):
        return BEFORE_ANY_CHANGE
    row = con.execute(
        f"SELECT change_id, change_uid FROM {JOURNAL} ORDER BY change_id DESC LIMIT 1"
    ).fetchone()
    return Watermark(int(row[0]), row[1]) if row else BEFORE_ANY_CHANGE


def changes_since(con: duckdb.DuckDBPyConnection, since: Watermark) -> list[Change] | None:
    """The changes after `since`, or None when `since` is not a change of this journal (a
    restored or rebuilt warehouse): then nothing after it can be trusted."""
    if not journal_exists(con):
        return [] if since == BEFORE_ANY_CHANGE else None
    if since != BEFORE_ANY_CHANGE:
        found = con.execute(
            f"SELECT count(*) FROM {JOURNAL} WHERE change_id = ? AND change_uid = ?",
            [since.change_id, since.change_uid],
        ).fetchone()[0]
        if not found:
            return None
    rows = con.execute(
        f"SELECT table_name, first_session, last_session, tickers FROM {JOURNAL} "
        "WHERE change_id > ? ORDER BY change_id",
        [since.change_id],
    ).fetchall()
    return [Change(t, f, lst, tuple(k) if k is not None else None) for t, f, lst, k in rows]


def journaled_tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Tables the shared writer has written (`schema.table`): every change to them is in the
    journal. Other tables (dbt marts, ops tables written by their own code) are not."""
    if not journal_exists(con):
        return set()
    return {t for (t,) in con.execute(f"SELECT DISTINCT table_name FROM {JOURNAL}").fetchall()}


def prune(con: duckdb.DuckDBPyConnection, upto: Watermark) -> int:
    """Delete the changes before `upto` (kept: `upto` itself and each table's newest change);
    returns how many. Call once the current snapshot stores `upto`."""
    if upto == BEFORE_ANY_CHANGE or not journal_exists(con):
        return 0
    (deleted,) = con.execute(
        f"DELETE FROM {JOURNAL} WHERE change_id < ? AND change_id NOT IN "
        f"(SELECT max(change_id) FROM {JOURNAL} GROUP BY table_name)",
        [upto.change_id],
    ).fetchone()
    return int(deleted)
