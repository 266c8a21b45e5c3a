"""The API's view of the current snapshot: one read-only DuckDB connection per snapshot file,
switched when `current.duckdb` points somewhere new (checked on every request: one readlink),
so a new snapshot is served without a restart and a request never mixes two snapshots."""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from marketflow_assets.serving import layout

OPEN_ATTEMPTS = 3
RESPONSE_CACHE_BYTES = 64 * 2**20
"""Bodies of responses kept per snapshot (a snapshot never changes, so neither do they)."""


class NoSnapshotError(RuntimeError):
    """Nothing has been published yet."""


@dataclass
class OpenSnapshot:
    id: str
    path: Path
    con: duckdb.DuckDBPyConnection
    run_id: str | None = None
    created_at: dt.datetime | None = None
    tables: dict[str, dict] = field(default_factory=dict)  # name -> {latest_session, row_count}
    columns: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    tickers: frozenset[str] = frozenset()
    responses: ResponseCache = field(default_factory=lambda: ResponseCache(RESPONSE_CACHE_BYTES))

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection of its own for one request (DuckDB connections are not shared between
        threads); all of them read this snapshot's file."""
        cur = self.con.cursor()
        try:
            yield cur
        finally:
            cur.close()

    def has(self, table: str) -> bool:
        return table in self.columns

    @property
    def latest_session(self) -> dt.date | None:
        return (self.tables.get("silver.daily_bars") or {}).get("latest_session")


class ResponseCache:
    """Successful responses of one snapshot by request (path and raw query string): body, media
    type and next cursor, the oldest evicted past `capacity` bytes. Safe to share between the
    server's threads (and its event loop, which answers repeats: `api/cached.py`)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._lock = threading.Lock()
        self._items: dict[tuple[str, bytes], tuple[bytes, str, str | None]] = {}
        self._bytes = 0

    def get(self, key: tuple[str, bytes]) -> tuple[bytes, str, str | None] | None:
        return self._items.get(key)

    def put(self, key: tuple[str, bytes], body: bytes, media: str, next_cursor: str | None) -> None:
        if len(body) > self.capacity // 8:
            return  # one huge page must not flush everything else
        with self._lock:
            if key in self._items:
                return
            self._items[key] = (body, media, next_cursor)
            self._bytes += len(body)
            while self._bytes > self.capacity:
                old = self._items.pop(next(iter(self._items)))[0]  # the oldest entry
                self._bytes -= len(old)


class SnapshotReader:
    def __init__(self, root: Path):
        self.root = root
        self._lock = threading.Lock()
        self._current: OpenSnapshot | None = None
        self._link = str(root / layout.CURRENT)
        self._opened: tuple[str, OpenSnapshot] | None = None  # (link target, its snapshot)

    def get(self) -> OpenSnapshot:
        opened = self._opened
        if opened is not None:  # the common case, on every request: one readlink, no Path
            try:
                if os.readlink(self._link) == opened[0]:  # noqa: PTH115 (a str: no Path per request)
                    return opened[1]
            except OSError:
                pass
        for _ in range(OPEN_ATTEMPTS):
            target = layout.current_target(self.root)
            if target is None:
                raise NoSnapshotError(f"no snapshot published under {self.root} yet")
            current = self._current
            if current is not None and current.path == target:
                return current
            with self._lock:
                if self._current is not None and self._current.path == target:
                    return self._current
                try:
                    self._current = _open(target)
                except (duckdb.IOException, FileNotFoundError):
                    continue  # removed by retention between readlink and open: look again
                self._opened = (str(target.relative_to(self.root)), self._current)
                return self._current
        raise NoSnapshotError(f"the current snapshot under {self.root} could not be opened")


def _open(path: Path) -> OpenSnapshot:
    con = duckdb.connect(str(path), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    snapshot = OpenSnapshot(id=path.stem, path=path, con=con)
    for row in con.execute(
        "SELECT run_id, created_at, table_name, latest_session, row_count FROM serving.manifest"
    ).fetchall():
        snapshot.run_id, snapshot.created_at = row[0], row[1]
        snapshot.tables[row[2]] = {"latest_session": row[3], "row_count": row[4]}
    for schema, table, column, kind in con.execute(
        "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns "
        "ORDER BY table_schema, table_name, ordinal_position"
    ).fetchall():
        snapshot.columns.setdefault(f"{schema}.{table}", []).append((column, kind))
    known = []
    for table in ("silver.symbols", "serving.latest_prices"):
        if snapshot.has(table):
            known += [r[0] for r in con.execute(f"SELECT DISTINCT ticker FROM {table}").fetchall()]
    snapshot.tickers = frozenset(known)
    return snapshot
