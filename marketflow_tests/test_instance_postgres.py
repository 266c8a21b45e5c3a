"""The deployment instance (`marketflow_assets/instance/dagster.postgres.yaml`) against a real
PostgreSQL server the test starts itself: a range run of the daily raw -> bronze path records
every session as materialized and every partitioned check's verdict per session, nothing left
PLANNED, with the events written in batches by MarketFlow's PostgreSQL event log.

Skips with the reason when no server can start here (no PostgreSQL binaries); `.ci/run` installs
Debian's `postgresql` so it runs in CI."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

import marketflow_assets
from marketflow_assets.calendar import xnys
from marketflow_assets.definitions import build_definitions
from marketflow_assets.instance.batched_events import BatchedPostgresEventLogStorage
from marketflow_tests.helpers import make_settings, materialize
from marketflow_tests.postgres_server import PostgresUnavailable, start_postgres

POSTGRES_YAML = Path(marketflow_assets.__file__).parent / "instance" / "dagster.postgres.yaml"
RANGE = ("2024-06-03", "2024-06-07")
RAW = dg.AssetKey(["raw", "daily_bars"])
BRONZE = dg.AssetKey(["bronze", "daily_bars"])


@pytest.fixture
def postgres_instance(isolated_dagster_home, monkeypatch):
    try:
        server_context = start_postgres()
        server = server_context.__enter__()
    except PostgresUnavailable as exc:
        pytest.skip(f"no PostgreSQL server can start here: {exc}")
    try:
        monkeypatch.setenv("DAGSTER_POSTGRES_HOST", server.host)
        monkeypatch.setenv("DAGSTER_POSTGRES_PORT", str(server.port))
        monkeypatch.setenv("DAGSTER_POSTGRES_USER", server.user)
        monkeypatch.setenv("DAGSTER_POSTGRES_PASSWORD", "trust-auth-ignores-it")
        monkeypatch.setenv("DAGSTER_POSTGRES_DB", server.db_name)
        monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "5000")  # as the Makefile exports it
        shutil.copy(POSTGRES_YAML, Path(isolated_dagster_home) / "dagster.yaml")
        with dg.DagsterInstance.get() as instance:
            yield instance
    finally:
        server_context.__exit__(None, None, None)


@pytest.mark.slow
def test_range_run_on_the_postgres_instance(tmp_path, postgres_instance):
    instance = postgres_instance
    assert isinstance(instance.event_log_storage, BatchedPostgresEventLogStorage)
    assert type(instance.run_storage).__module__.startswith("dagster_postgres")
    settings = make_settings(tmp_path / "home")
    assets = [RAW, BRONZE]
    result = materialize(
        settings,
        select=[k.to_user_string() for k in assets],
        partition_range=RANGE,
        instance=instance,
    )
    assert result.success
    first, last = (dt.date.fromisoformat(d) for d in RANGE)
    sessions = {s.isoformat() for s in xnys().sessions_in_range(first, last)}
    assert len(sessions) == 5
    for key in assets:
        assert instance.get_materialized_partitions(key) == sessions, key
    check_keys = [
        k
        for k in build_definitions(settings).resolve_asset_graph().asset_check_keys
        if k.asset_key in assets
    ]
    assert len(check_keys) >= 5
    for check_key in check_keys:
        history = instance.event_log_storage.get_asset_check_execution_history(check_key, limit=100)
        assert history, check_key
        assert all(r.status != AssetCheckExecutionRecordStatus.PLANNED for r in history), check_key
        per_session = {r.partition: r.status for r in history if r.partition}
        if per_session:  # partitioned checks (and unpartitioned ones Dagster planned per session)
            assert per_session == dict.fromkeys(
                sessions, AssetCheckExecutionRecordStatus.SUCCEEDED
            ), check_key
