"""A passing range verdict marked `COVERS_PLANNED_SESSIONS` resolves, in SQL, every session of
its check the run still has planned (`batched_events._rewrite_planned_sessions`): each row keeps
its session and creation time and gets the verdict and its session's latest materialization;
a session with its own verdict keeps it; another check's planned rows, or another run's, are not
touched; and nothing set aside on the way is left behind."""

from __future__ import annotations

import datetime as dt
import time
import uuid

import dagster as dg
import sqlalchemy as db
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluation,
    AssetCheckEvaluationPlanned,
)
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.events import StepMaterializationData
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
from dagster._serdes import deserialize_value

from marketflow_assets.instance.batched_events import COVERS_PLANNED_SESSIONS
from marketflow_tests.helpers import event_log_entry

DAYS = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-02-01")
KEYS = DAYS.get_partition_keys()  # 31 sessions
ASSET = dg.AssetKey(["silver", "bars"])
T = dg.DagsterEventType


def _entry(run_id: str, event_type: T, data, stamp: float, step: str) -> EventLogEntry:
    return event_log_entry(
        run_id,
        event_type,
        data,
        timestamp=stamp,
        step=step,
        job="job",
        message=f"{event_type.value} in {run_id}",
    )


def _materializations(run_id: str, keys: list[str], stamp: float) -> list[EventLogEntry]:
    return [
        _entry(
            run_id,
            T.ASSET_MATERIALIZATION,
            StepMaterializationData(dg.AssetMaterialization(ASSET, partition=key)),
            stamp,
            "bars",
        )
        for key in keys
    ]


def _planned(run_id: str, check: str, keys: list[str], stamp: float) -> EventLogEntry:
    subset = DAYS.subset_with_partition_keys(keys).to_serializable_subset()
    data = AssetCheckEvaluationPlanned(asset_key=ASSET, check_name=check, partitions_subset=subset)
    return _entry(run_id, T.ASSET_CHECK_EVALUATION_PLANNED, data, stamp, "bars_checks")


def _verdict(
    run_id: str, check: str, partition: str | None, passed: bool, stamp: float, **metadata
) -> EventLogEntry:
    data = AssetCheckEvaluation(
        asset_key=ASSET,
        check_name=check,
        passed=passed,
        metadata=metadata,
        partition=partition,
        description="covering" if partition is None else f"own verdict of {partition}",
    )
    return _entry(run_id, T.ASSET_CHECK_EVALUATION, data, stamp, "bars_checks")


def _rows(storage, **where) -> list:
    table = AssetCheckExecutionsTable
    query = table.select().where(*(table.c[k] == v for k, v in where.items()))
    with storage.index_connection() as conn:
        return conn.execute(query.order_by(table.c.partition)).fetchall()


def _latest_materializations(storage) -> dict[str, int]:
    ids = storage.get_latest_storage_id_by_partition(ASSET, T.ASSET_MATERIALIZATION)
    return dict(ids)


def test_a_covering_verdict_resolves_each_planned_session_with_its_own_materialization(
    batched_instance,
):
    storage = batched_instance.event_log_storage
    earlier, run_id = str(uuid.uuid4()), str(uuid.uuid4())
    now = time.time()
    # An earlier run materialized the first ten sessions; this run all but the last five: the
    # sessions 0-9 have their latest materialization in this run, 26-30 only none.
    storage.store_event_batch(_materializations(earlier, KEYS[:10], now - 100))
    storage.store_event_batch(
        [
            _planned(run_id, "positive", KEYS, now - 50),
            _planned(run_id, "complete", KEYS, now - 49),
        ]
    )
    planned_at = {r.partition: r.create_timestamp for r in _rows(storage, check_name="positive")}
    assert len(planned_at) == len(KEYS)
    storage.store_event_batch(_materializations(run_id, KEYS[:-5], now - 10))
    latest = _latest_materializations(storage)

    # Session 3 failed on its own; the covering verdict stands for the other 30.
    storage.store_event_batch(
        [
            _verdict(run_id, "positive", KEYS[3], False, now, failing_rows=2),
            _verdict(
                run_id, "positive", None, True, now, **{COVERS_PLANNED_SESSIONS: len(KEYS) - 1}
            ),
        ]
    )

    rows = _rows(storage, check_name="positive")
    assert [r.partition for r in rows] == KEYS  # one row per session, none set aside left
    assert {r.run_id for r in rows} == {run_id}
    for row in rows:
        assert row.create_timestamp == planned_at[row.partition], row.partition
        evaluation = deserialize_value(row.evaluation_event, EventLogEntry)
        verdict = evaluation.dagster_event.event_specific_data
        if row.partition == KEYS[3]:  # the materialization its own evaluation names (none here)
            assert row.materialization_event_storage_id is None
            assert row.execution_status == "FAILED"
            assert verdict.partition == KEYS[3] and verdict.metadata["failing_rows"].value == 2
        else:
            assert row.materialization_event_storage_id == latest.get(row.partition), row
            assert row.execution_status == "SUCCEEDED"
            assert verdict.passed and verdict.description == "covering"
    # The sessions materialized in both runs point at this run's materialization.
    assert rows[0].materialization_event_storage_id > max(
        r.storage_id
        for r in storage.get_records_for_run(earlier, of_type=T.ASSET_MATERIALIZATION).records
    )
    # The other check of the run is still planned, every session of it.
    other = _rows(storage, check_name="complete")
    assert [r.partition for r in other] == KEYS
    assert {r.execution_status for r in other} == {"PLANNED"}

    # What the UI reads for a session: its verdict, current with its latest materialization.
    check = dg.AssetCheckKey(ASSET, "positive")
    (record,) = storage.get_asset_check_execution_history(
        check, limit=1, partition_filter=PartitionKeyFilter(key=KEYS[12])
    )
    assert record.status.value == "SUCCEEDED"
    assert record.event.dagster_event.event_specific_data.passed


def test_a_covering_verdict_leaves_other_runs_rows_alone(batched_instance):
    storage = batched_instance.event_log_storage
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    now = time.time()
    storage.store_event_batch([_planned(first, "positive", KEYS[:5], now)])
    storage.store_event_batch([_planned(second, "positive", KEYS[:5], now + 1)])
    storage.store_event_batch(
        [_verdict(second, "positive", None, True, now + 2, **{COVERS_PLANNED_SESSIONS: 5})]
    )
    assert {r.execution_status for r in _rows(storage, run_id=first)} == {"PLANNED"}
    assert {r.execution_status for r in _rows(storage, run_id=second)} == {"SUCCEEDED"}
    table = AssetCheckExecutionsTable
    with storage.index_connection() as conn:
        runs = {r[0] for r in conn.execute(db.select(table.c.run_id).distinct())}
    assert runs == {first, second}
    assert all(isinstance(r.create_timestamp, dt.datetime) for r in _rows(storage, run_id=second))
