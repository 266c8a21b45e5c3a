"""What a range run leaves per session in the instance is small: the per-session copies are
stored without the fields that restate their class's defaults (`instance/slim_json.py`) and read
back as the same events through Dagster's API; the SQLite event log's files use 16 KB pages, so
those ~1 KB rows fill them, and give freed pages back (`instance/batched_events.py`)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._serdes import deserialize_value, serialize_value

from marketflow_assets.instance.batched_events import COVERS_PLANNED_SESSIONS, SQLITE_PAGE_SIZE
from marketflow_assets.instance.slim_json import slim
from marketflow_tests.helpers import event_log_entry
from marketflow_tests.test_instance_storage import BAD, DAYS, KEYS, A, run_range

REPO = Path(__file__).resolve().parents[1]


@dg.multi_asset_check(
    specs=[dg.AssetCheckSpec("per_day", asset=A, partitions_def=DAYS)], can_subset=True
)
def covered_checks(context):
    """The failing days get a verdict each; one covering verdict stands for the others, as
    MarketFlow's per-session checks report a range (`checks/per_session.py`)."""
    failing = [key for key in context.partition_keys if key in BAD]
    for key in failing:
        yield dg.AssetCheckEvaluation(
            asset_key=A, check_name="per_day", passed=False, partition=key
        )
    others = len(context.partition_keys) - len(failing)
    yield dg.AssetCheckResult(
        asset_key=A,
        check_name="per_day",
        passed=True,
        description=f"no failing rows on the {others} other session(s)",
        metadata={COVERS_PLANNED_SESSIONS: others},
    )


def _covering_verdict() -> dg.EventLogEntry:
    evaluation = dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey(["silver", "daily_bars"]),
        check_name="contract",
        passed=True,
        metadata={"failing_rows": 0, "range": "2014-06-05..2024-06-07 (2520 sessions)"},
        description="no failing rows on the 2520 other session(s)",
    )
    return event_log_entry(
        "1565d02e-f519-4737-acbe-92a9d0152289",
        dg.DagsterEventType.ASSET_CHECK_EVALUATION,
        evaluation,
        timestamp=1795842672.5,
        step="silver__daily_bars_checks",
    )


def test_slim_text_reads_back_as_the_same_event():
    full = serialize_value(_covering_verdict())
    slimmed = slim(full)
    assert len(slimmed) < 0.85 * len(full)
    assert deserialize_value(slimmed) == deserialize_value(full)
    stored = json.loads(slimmed)["dagster_event"]
    for default_valued in ("pid", "logging_tags", "step_handle", "solid_handle", "message"):
        assert default_valued not in stored, default_valued
    verdict = stored["event_specific_data"]
    assert verdict["description"] and verdict["metadata"]["range"]  # what the UI shows stays


def test_slim_keeps_text_it_cannot_prove_the_same():
    """A class this process does not know cannot be read back: its text is kept as it is."""
    unknown = json.dumps({"__class__": "NotADagsterClass", "pid": None, "tags": {}})
    assert slim(unknown) == unknown


@pytest.fixture
def sqlite_instance(isolated_dagster_home, monkeypatch):
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "5000")
    shutil.copy(REPO / "dagster.yaml", Path(isolated_dagster_home) / "dagster.yaml")
    with dg.DagsterInstance.get() as instance:
        yield instance, Path(isolated_dagster_home)


def test_range_run_on_sqlite_keeps_slim_session_rows_that_read_back(sqlite_instance):
    instance, home = sqlite_instance
    run_range(instance, covered_checks)
    assert instance.get_materialized_partitions(A) == set(KEYS)
    runs = home / "history" / "runs"
    shards = sorted(runs.glob("*.db"))
    assert runs / "index.db" in shards and len(shards) == 2  # the index and the run's shard
    for path in shards:
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA page_size").fetchone()[0] == SQLITE_PAGE_SIZE, path
            assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 1, path  # FULL
            assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0, path
    with sqlite3.connect(runs / "index.db") as conn:
        stored = dict(
            conn.execute(
                "SELECT partition, evaluation_event FROM asset_check_executions "
                "WHERE check_name = 'per_day' AND partition IS NOT NULL"
            ).fetchall()
        )
        compacted = conn.execute(
            "SELECT event FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' "
            "AND partition = ?",
            (KEYS[0],),
        ).fetchone()[0]
    # Sessions a passing range covered hold the slim copy of its verdict (no spaces, no
    # `"pid": null`); the failing ones their own event as Dagster wrote it.
    assert set(stored) == set(KEYS)
    for key, text in stored.items():
        assert ('"pid"' in text) == (key in BAD), key
    assert '"pid"' not in compacted and ", " not in compacted
    # Read through Dagster's API: each session's verdict, the covering one on the passing days.
    per_day = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(A, "per_day"), limit=200
    )
    S = AssetCheckExecutionRecordStatus
    assert {r.partition: r.status for r in per_day} == {
        k: S.FAILED if k in BAD else S.SUCCEEDED for k in KEYS
    }
    for r in per_day:
        if r.partition not in BAD:
            assert r.evaluation.passed and r.evaluation.metadata[COVERS_PLANNED_SESSIONS].value
            assert (
                r.evaluation.description
                == f"no failing rows on the {len(KEYS) - 2} other session(s)"
            )
    record = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=A, asset_partitions=[KEYS[0]]), limit=1
    ).records[0]
    assert record.event_log_entry.message  # the run's log line keeps its message
    assert record.asset_materialization.tags["dagster/data_version"]
