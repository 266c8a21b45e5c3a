"""MarketFlow's batched event log storages (`marketflow_assets/instance/batched_events.py`) record
a single-run range backfill as Dagster's own per-event writes would, read back through Dagster's
API: every partition materialized, per-partition check verdicts, the asset's latest
materialization, and no check execution left PLANNED (also for an unpartitioned check, which
Dagster plans once per partition of a range run but evaluates once)."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from marketflow_assets.checks.per_session import latest_materializations

REPO = Path(__file__).resolve().parents[1]
DAYS = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-03-01")
KEYS = DAYS.get_partition_keys()[:40]
BAD = {KEYS[3], KEYS[17]}
A = dg.AssetKey("a")


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run())
def a(context) -> dg.MaterializeResult:
    schema = dg.TableSchema(columns=[dg.TableColumn("close", "double", description="close")])
    return dg.MaterializeResult(
        metadata={"partitions": len(context.partition_keys), "dagster/column_schema": schema}
    )


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec("per_day", asset=A, partitions_def=DAYS),
        dg.AssetCheckSpec("whole", asset=A),
    ],
    can_subset=True,
)
def a_checks(context):
    for key in context.partition_keys:
        yield dg.AssetCheckEvaluation(
            asset_key=A, check_name="per_day", passed=key not in BAD, partition=key
        )
    yield dg.AssetCheckResult(asset_key=A, check_name="per_day", passed=not BAD)
    yield dg.AssetCheckResult(asset_key=A, check_name="whole", passed=True)


def run_range(instance: dg.DagsterInstance, checks=a_checks) -> None:
    """One range run of `a` over every day, with `checks`."""
    defs = dg.Definitions(assets=[a], asset_checks=[checks], executor=dg.in_process_executor)
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": KEYS[0],
            "dagster/asset_partition_range_end": KEYS[-1],
        },
    )
    assert result.success


def _assert_recorded(instance: dg.DagsterInstance) -> None:
    assert instance.get_materialized_partitions(A) == set(KEYS)
    storage = instance.event_log_storage
    per_day = storage.get_asset_check_execution_history(dg.AssetCheckKey(A, "per_day"), limit=200)
    statuses = {r.partition: r.status for r in per_day if r.partition}
    S = AssetCheckExecutionRecordStatus
    assert statuses == {k: S.FAILED if k in BAD else S.SUCCEEDED for k in KEYS}
    latest = storage.get_latest_storage_id_by_partition(
        A, dg.DagsterEventType.ASSET_MATERIALIZATION
    )
    assert set(latest) == set(KEYS)
    for name in ("per_day", "whole"):
        history = storage.get_asset_check_execution_history(dg.AssetCheckKey(A, name), limit=200)
        assert history and all(r.status != S.PLANNED for r in history), name


def test_batched_storage_records_a_range_run_per_partition(batched_instance):
    run_range(batched_instance)
    _assert_recorded(batched_instance)


def test_each_partition_keeps_its_own_event(batched_instance):
    """Each stored materialization of a range run carries its own partition, timestamp and data
    version, and is found by its partition; the step's metadata (the same for every session)
    only on the last two, the asset's latest, which `column_schema_change` compares."""
    run_range(batched_instance)
    stamps = []
    for key in KEYS:
        records = batched_instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=A, asset_partitions=[key]), limit=5
        ).records
        assert len(records) == 1, key
        event = records[0].event_log_entry
        assert event.dagster_event.partition == key
        metadata = event.asset_materialization.metadata
        assert ("partitions" in metadata) == (key in KEYS[-2:]), key
        assert ("dagster/column_schema" in metadata) == (key in KEYS[-2:]), key
        assert event.asset_materialization.tags["dagster/data_version"], key
        stamps.append(event.timestamp)
    assert len(set(stamps)) == len(KEYS)
    latest_two = batched_instance.fetch_materializations(A, limit=2).records
    for record in latest_two:
        schema = record.asset_materialization.metadata["dagster/column_schema"].value
        assert schema.columns[0].name == "close"


def test_an_unpartitioned_check_of_a_range_keeps_one_execution(batched_instance):
    """An unpartitioned check that Dagster planned once per session of the range ends with the
    single execution of its verdict, as after a one-session run; the sessions a passing range
    covers each keep a slim copy of the covering verdict."""
    run_range(batched_instance)
    storage = batched_instance.event_log_storage
    whole = storage.get_asset_check_execution_history(dg.AssetCheckKey(A, "whole"), limit=200)
    assert [(r.partition, r.status) for r in whole] == [
        (None, AssetCheckExecutionRecordStatus.SUCCEEDED)
    ]
    per_day = storage.get_asset_check_execution_history(dg.AssetCheckKey(A, "per_day"), limit=200)
    assert len([r for r in per_day if r.partition]) == len(KEYS)


def test_without_batches_the_same_storage_records_the_same(isolated_dagster_home, monkeypatch):
    monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE", raising=False)
    shutil.copy(REPO / "dagster.yaml", Path(isolated_dagster_home) / "dagster.yaml")
    with dg.DagsterInstance.get() as instance:
        run_range(instance)
        _assert_recorded(instance)


def test_an_instance_opened_from_a_folder_keeps_its_events_there(tmp_path, isolated_dagster_home):
    """`DagsterInstance.from_config(folder)` while DAGSTER_HOME names another folder (a script,
    a test, `dagster-daemon` started elsewhere): the events go with the runs, into the opened
    folder, never into DAGSTER_HOME's event log (where its runs' pool slots could not be seen)."""
    opened = tmp_path / "opened"
    opened.mkdir()
    shutil.copy(REPO / "dagster.yaml", opened / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(opened)) as instance:
        run_range(instance)
        _assert_recorded(instance)
    assert (opened / "history" / "runs" / "index.db").exists()
    assert not (Path(isolated_dagster_home) / "history").exists()
    with dg.DagsterInstance.from_config(str(opened)) as again:  # and read back from there
        _assert_recorded(again)


def test_latest_materializations_read_from_columns_match_the_records(batched_instance):
    """Per-session verdicts target each session's latest materialization; on MarketFlow's
    storages its run and time come from the event rows' columns, as the records have them."""
    run_range(batched_instance)
    targets = latest_materializations(batched_instance, A, KEYS)
    records = batched_instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=A), limit=len(KEYS) + 1
    ).records
    assert len(records) == len(targets) == len(KEYS)
    for record in records:
        target = targets[record.partition_key]
        assert (target.storage_id, target.run_id) == (record.storage_id, record.run_id)
        assert target.timestamp == pytest.approx(record.timestamp, abs=1e-3)
