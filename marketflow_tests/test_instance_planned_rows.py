"""The planned check rows of a range run, written once from Python for the first check of a
range and copied in SQL for the others (`BatchedEventWrites._store_planned_checks`), are the
rows each check would get on its own: one PLANNED row per session, pointing at its own planned
event; and verdicts find their planned rows whether looked up by key or all at once."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationPlanned,
)
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
from dagster._serdes import deserialize_value

from marketflow_assets.instance import batched_events
from marketflow_tests.helpers import event_log_entry
from marketflow_tests.test_instance_storage import _assert_recorded, run_range

REPO = Path(__file__).resolve().parents[1]
DAYS = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-03-01")
KEYS = DAYS.get_partition_keys()


def _planned(run_id: str, check: str, keys: list[str] | None, stamp: float) -> EventLogEntry:
    subset = DAYS.subset_with_partition_keys(keys).to_serializable_subset() if keys else None
    return event_log_entry(
        run_id,
        dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
        AssetCheckEvaluationPlanned(
            asset_key=dg.AssetKey("a"), check_name=check, partitions_subset=subset
        ),
        timestamp=stamp,
        step="a_checks",
        job="job",
        message=f"job intends to execute asset check {check}",
    )


def _rows(storage, run_id: str) -> dict[str, list]:
    table = AssetCheckExecutionsTable
    with storage.index_connection() as conn:
        rows = conn.execute(
            AssetCheckExecutionsTable.select()
            .where(table.c.run_id == run_id)
            .order_by(table.c.check_name, table.c.partition)
        ).fetchall()
    out: dict[str, list] = {}
    for row in rows:
        out.setdefault(row.check_name, []).append(row)
    return out


def test_planned_rows_of_every_check_of_a_batch(batched_instance):
    storage = batched_instance.event_log_storage
    run_id = str(uuid.uuid4())
    now = time.time()
    entries = [
        _planned(run_id, "first", KEYS[:30], now),
        _planned(run_id, "second", KEYS[:30], now + 1),  # same range: copied in SQL
        _planned(run_id, "other", KEYS[10:20] + KEYS[40:45], now + 2),  # another subset
        _planned(run_id, "third", KEYS[:30], now + 3),
        _planned(run_id, "whole", None, now + 4),  # no subset: one row holding the event
    ]
    storage.store_event_batch(entries)
    rows = _rows(storage, run_id)
    ids = {
        r.event_log_entry.dagster_event.event_specific_data.check_name: r.storage_id
        for r in storage.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED
        ).records
    }
    expected = {
        "first": KEYS[:30],
        "second": KEYS[:30],
        "third": KEYS[:30],
        "other": sorted(KEYS[10:20] + KEYS[40:45]),
        "whole": [None],
    }
    assert set(rows) == set(expected)
    for check, keys in expected.items():
        assert [r.partition for r in rows[check]] == keys, check
        for row in rows[check]:
            assert row.asset_key == dg.AssetKey("a").to_string()
            assert row.execution_status == "PLANNED"
            assert row.evaluation_event_storage_id == ids[check], check
            assert row.materialization_event_storage_id is None
        stamps = {r.evaluation_event_timestamp for r in rows[check]}
        assert len(stamps) == 1, check
        if check != "whole":
            assert {r.evaluation_event for r in rows[check]} == {None}, check
    whole = deserialize_value(rows["whole"][0].evaluation_event, EventLogEntry)
    assert whole.dagster_event.event_specific_data.check_name == "whole"
    # Each check's rows carry its own planned event's time.
    firsts = {c: rows[c][0].evaluation_event_timestamp for c in ("first", "second", "third")}
    assert firsts["first"] < firsts["second"] < firsts["third"]
    # What the UI reads: every session of each check planned in this run.
    history = storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("a"), "second"), limit=100
    )
    assert sorted(r.partition for r in history) == KEYS[:30]


@pytest.mark.parametrize("few", [0, 500], ids=["all-rows", "by-key"])
def test_verdicts_find_their_planned_rows_either_way(batched_instance, monkeypatch, few):
    """A batch of verdicts reads the run's planned rows of its partitions by key (a few) or all
    of the check's rows (many): the same verdicts recorded."""
    monkeypatch.setattr(batched_events, "_FEW_PARTITIONS", few)
    run_range(batched_instance)
    _assert_recorded(batched_instance)
