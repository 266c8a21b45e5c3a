"""`instance/event_rows.py`: the per-partition materializations of one output are serialized
from one template, and every row is what Dagster's own `_event_to_row` gives, byte for byte;
events that are not alike (other metadata objects, another asset) are serialized one by one."""

from __future__ import annotations

import dagster as dg
from dagster._core.storage.event_log.in_memory import InMemoryEventLogStorage

from marketflow_assets.instance.event_rows import event_rows

DAYS = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-03-01")
KEYS = DAYS.get_partition_keys()[:30]


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run())
def prices(context) -> dg.MaterializeResult:
    schema = dg.TableSchema(columns=[dg.TableColumn("close", "double", description="close")])
    return dg.MaterializeResult(
        metadata={
            "rows": len(context.partition_keys),
            "ratio": 1.5,
            "dagster/column_schema": schema,
        }
    )


def _materializations() -> list:
    """The events of a range run as the run hands them to the storage: read back, they no
    longer share metadata objects, so they are rebuilt the way `execute_step` builds them (one
    metadata dict's values shared by every partition's event)."""
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [prices],
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": KEYS[0],
            "dagster/asset_partition_range_end": KEYS[-1],
        },
    )
    read = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    first = read[0]
    event = first.get_dagster_event()
    data = event.event_specific_data
    metadata = dict(data.materialization.metadata)  # one set of value objects, as in a run
    return [
        entry._replace(
            dagster_event=event._replace(
                event_specific_data=data._replace(
                    materialization=data.materialization._replace(
                        metadata=dict(metadata), partition=entry.dagster_event.partition
                    )
                )
            )
        )
        for entry in read
    ], read


def test_rows_are_dagsters_own_byte_for_byte():
    shared, read_back = _materializations()
    storage = InMemoryEventLogStorage()
    assert len(shared) == len(KEYS)
    assert len(
        {
            row["event"]
            for row in event_rows(shared, storage._event_to_row, storage._event_insert_timestamp)
        }
    ) == len(KEYS)
    for entries in (shared, read_back, shared[:1], [*shared[:5], *read_back[5:9], *shared[9:]]):
        expected = [storage._event_to_row(e) for e in entries]
        assert (
            event_rows(entries, storage._event_to_row, storage._event_insert_timestamp) == expected
        )


def test_a_template_is_used_only_for_alike_events(monkeypatch):
    shared, read_back = _materializations()
    storage = InMemoryEventLogStorage()
    calls = []
    from marketflow_assets.instance import event_rows as module

    real = module.serialize_value
    monkeypatch.setattr(module, "serialize_value", lambda value: calls.append(1) or real(value))
    event_rows(shared, storage._event_to_row, storage._event_insert_timestamp)
    assert len(calls) == 2  # the first event, and the template (checked against the first)
    calls.clear()
    event_rows(read_back, storage._event_to_row, storage._event_insert_timestamp)
    assert len(calls) == len(read_back)  # no two share their metadata objects: one each
