"""Rows written through sqlite3's `executemany` (`instance/sqlite_rows.py`) are the rows
SQLAlchemy's own INSERT writes: the same stored text (datetimes in SQLAlchemy's format), the same
values read back, and the ids of the inserted rows in their order."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as db
from dagster._core.storage.event_log.schema import (
    AssetEventTagsTable,
    SqlEventLogStorageMetadata,
    SqlEventLogStorageTable,
)

from marketflow_assets.instance import sqlite_rows

T0 = dt.datetime(2026, 11, 28, 10, 0, 0)


def _event_rows(n: int, start: int = 0) -> list[dict]:
    return [
        {
            "run_id": "run-1",
            "event": f'{{"n": {i}, "text": "caf\\u00e9 \\"quoted\\""}}',
            "dagster_event_type": "ASSET_MATERIALIZATION",
            # whole seconds (no microseconds) too: the stored text keeps ".000000"
            "timestamp": T0 + dt.timedelta(seconds=i, microseconds=0 if i % 2 else 1234),
            "step_key": "silver_daily_validation" if i % 3 else None,
            "asset_key": '["silver", "daily_bars"]',
            "partition": f"2024-01-{1 + i % 28:02d}",
        }
        for i in range(start, start + n)
    ]


@pytest.fixture
def engines():
    made = [db.create_engine("sqlite://") for _ in range(2)]
    for engine in made:
        SqlEventLogStorageMetadata.create_all(engine)
    yield made
    for engine in made:
        engine.dispose()


def _stored(engine, table: db.Table) -> tuple[list, list]:
    with engine.connect() as conn:
        raw = conn.exec_driver_sql(f'SELECT * FROM "{table.name}" ORDER BY id').fetchall()
        read = conn.execute(table.select().order_by(table.c.id)).fetchall()
    return [tuple(r) for r in raw], [tuple(r) for r in read]


def test_event_and_tag_rows_are_stored_as_sqlalchemy_stores_them(engines):
    theirs, ours = engines
    events = _event_rows(40)
    tags = [
        {
            "event_id": i + 1,
            "asset_key": '["silver", "daily_bars"]',
            "key": "dagster/data_version",
            "value": f"v{i}",
            "event_timestamp": row["timestamp"],
        }
        for i, row in enumerate(events)
    ]
    with theirs.begin() as conn:
        conn.execute(SqlEventLogStorageTable.insert(), events)
        conn.execute(AssetEventTagsTable.insert(), tags)
    with ours.begin() as conn:
        assert sqlite_rows.applies(conn, SqlEventLogStorageTable)
        sqlite_rows.insert(conn, SqlEventLogStorageTable, events)
        assert sqlite_rows.inserted_ids(conn, SqlEventLogStorageTable, 40) == list(range(1, 41))
        sqlite_rows.insert(conn, AssetEventTagsTable, tags)
    for table in (SqlEventLogStorageTable, AssetEventTagsTable):
        assert _stored(ours, table) == _stored(theirs, table), table.name
    raw, read = _stored(ours, SqlEventLogStorageTable)
    assert raw[1][4] == "2026-11-28 10:00:01.000000"
    assert read[0][4] == T0.replace(microsecond=1234)


def test_ids_follow_rows_already_in_the_table(engines):
    engine = engines[0]
    with engine.begin() as conn:
        conn.execute(SqlEventLogStorageTable.insert(), _event_rows(7))
        conn.execute(SqlEventLogStorageTable.delete().where(SqlEventLogStorageTable.c.id == 7))
    with engine.begin() as conn:
        sqlite_rows.insert(conn, SqlEventLogStorageTable, _event_rows(5, start=100))
        ids = sqlite_rows.inserted_ids(conn, SqlEventLogStorageTable, 5)
        stored = conn.execute(
            db.select(SqlEventLogStorageTable.c.id, SqlEventLogStorageTable.c.event).where(
                SqlEventLogStorageTable.c.id.in_(ids)
            )
        ).fetchall()
    assert ids == list(range(ids[0], ids[0] + 5)) and ids[0] >= 7
    assert [e for _, e in sorted(stored)] == [r["event"] for r in _event_rows(5, start=100)]


def test_a_wrong_count_or_column_is_refused(engines):
    engine = engines[0]
    with engine.begin() as conn:
        sqlite_rows.insert(conn, SqlEventLogStorageTable, _event_rows(3))
        with pytest.raises(RuntimeError, match="consecutive ids"):
            sqlite_rows.inserted_ids(conn, SqlEventLogStorageTable, 4)
        with pytest.raises(ValueError, match="no column"):
            sqlite_rows.insert(conn, SqlEventLogStorageTable, [{"run_id": "r", "bogus": 1}])
        sqlite_rows.insert(conn, SqlEventLogStorageTable, [])  # nothing to write


def test_only_plain_datetime_columns_on_sqlite(engines):
    class Stamp(db.TypeDecorator):
        impl = db.DateTime
        cache_ok = True

    odd = db.Table("odd", db.MetaData(), db.Column("id", db.Integer, primary_key=True))
    odd.append_column(db.Column("at", Stamp()))
    with engines[0].connect() as conn:
        assert sqlite_rows.applies(conn, AssetEventTagsTable)
        assert not sqlite_rows.applies(conn, odd)
