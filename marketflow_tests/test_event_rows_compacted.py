"""MarketFlow's batch writes build rows as Dagster would. `event_rows` with compaction: the rows of the compacted positions are Dagster's own rows of the
compacted events, their text slimmed (`instance/slim_json.py`) and reading back as the same
event, byte for byte, although only the first event of a run of alike ones is compacted as an
object (`instance/event_rows.py`, `instance/batched_events.py`)."""

from __future__ import annotations

from dagster._core.storage.event_log.in_memory import InMemoryEventLogStorage
from dagster._core.storage.event_log.schema import AssetEventTagsTable
from dagster._serdes import deserialize_value

from marketflow_assets.instance import batched_events
from marketflow_assets.instance.batched_events import (
    BatchedInMemoryEventLogStorage,
    _compacted,
    _range_materializations_to_compact,
)
from marketflow_assets.instance.event_rows import event_rows
from marketflow_assets.instance.slim_json import slim
from marketflow_tests.test_event_rows import KEYS, _materializations


def _expected(storage, entries, compact):
    rows = []
    for i, entry in enumerate(entries):
        if i not in compact:
            rows.append(storage._event_to_row(entry))
            continue
        row = storage._event_to_row(_compacted(entry))
        # The slim text is shorter and reads back as the same compacted event.
        assert len(slim(row["event"])) < 0.9 * len(row["event"])
        assert deserialize_value(slim(row["event"])) == deserialize_value(row["event"])
        rows.append({**row, "event": slim(row["event"])})
    return rows


def test_compacted_rows_are_dagsters_rows_of_the_compacted_events(monkeypatch):
    shared, read_back = _materializations()
    storage = InMemoryEventLogStorage()
    compact = _range_materializations_to_compact(shared)
    assert compact == set(range(len(KEYS) - 2))  # all but the asset's latest two
    built = []
    monkeypatch.setattr(
        batched_events, "_compacted", lambda e: built.append(e) or _compacted(e), raising=True
    )
    rows = event_rows(
        shared,
        storage._event_to_row,
        storage._event_insert_timestamp,
        compact=compact,
        compacted=batched_events._compacted,
    )
    assert rows == _expected(storage, shared, compact)
    assert len(built) == 1  # the template's event only
    assert "column_schema" not in rows[0]["event"] and "column_schema" in rows[-1]["event"]
    # Mixed runs (events read back share no metadata objects) and partial compaction.
    for entries in (read_back, [*shared[:5], *read_back[5:9], *shared[9:]]):
        some = set(range(0, len(entries) - 2, 2))
        assert event_rows(
            entries,
            storage._event_to_row,
            storage._event_insert_timestamp,
            compact=some,
            compacted=_compacted,
        ) == _expected(storage, entries, some)


def test_asset_event_tag_rows_are_dagsters():
    """The indexed tags of a batch's asset events (their data versions) are the rows Dagster's
    own `_store_asset_event_tags` writes."""
    shared, read_back = _materializations()
    entries = []
    for i, entry in enumerate([*shared, *read_back]):
        event = entry.get_dagster_event()
        data = event.event_specific_data
        tags = {"dagster/data_version": f"v{i % 7}", "dagster/code_version": "1", "x": "y"}
        materialization = data.materialization._replace(tags=tags)
        entries.append(
            entry._replace(
                dagster_event=event._replace(
                    event_specific_data=data._replace(materialization=materialization)
                )
            )
        )
    ids = list(range(100, 100 + len(entries)))
    dagsters = InMemoryEventLogStorage()
    with dagsters.index_transaction() as conn:
        dagsters._store_asset_event_tags(conn, entries, ids)
    with dagsters.index_connection() as conn:
        written = [
            {
                c: row._mapping[c]
                for c in ("event_id", "asset_key", "key", "value", "event_timestamp")
            }
            for row in conn.execute(AssetEventTagsTable.select().order_by(AssetEventTagsTable.c.id))
        ]
    ours = BatchedInMemoryEventLogStorage()._asset_event_tag_rows(
        list(zip(entries, ids, strict=True))
    )
    assert len(written) == len(entries)  # one indexed tag each: the data version
    assert ours == written
