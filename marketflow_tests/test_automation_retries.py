"""Retries: provider steps and warehouse steps have retry policies; a warehouse briefly held by
another process (DuckDB admits one writer) delays a step, it does not fail the run."""

from __future__ import annotations

import subprocess
import sys

import duckdb
import pytest

from marketflow_assets.assets.dbt import DUCKDB_LOCK_ERROR
from marketflow_assets.assets.raw import PROVIDER_RETRY_POLICY
from marketflow_assets.definitions import build_definitions
from marketflow_assets.resources import WAREHOUSE_RETRY_POLICY
from marketflow_tests.helpers import materialize, query

HOLD = (
    "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
    "print('holding', flush=True); time.sleep(float(sys.argv[2]))"
)


def hold_warehouse(settings, seconds: float) -> subprocess.Popen:
    """Another process holding the DuckDB file (as a user's notebook or a sensor would)."""
    settings.warehouse.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(settings.warehouse), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "holding"
    return holder


def test_every_asset_has_its_retry_policy(settings):
    defs = build_definitions(settings)
    for key in defs.resolve_asset_graph().get_all_asset_keys():
        node = defs.get_assets_def(key)
        policy = node.op.retry_policy
        if key.path[0] == "raw":
            assert policy == PROVIDER_RETRY_POLICY, key
        elif "dbt" in node.specs_by_key[key].kinds:
            # dbt retries only on a locked warehouse (RetryRequested), never on a failing test.
            assert policy is None, key
        else:
            assert policy == WAREHOUSE_RETRY_POLICY, key


def test_the_dbt_lock_marker_matches_duckdbs_message(settings):
    holder = hold_warehouse(settings, 30)
    try:
        with pytest.raises(duckdb.IOException) as info:
            duckdb.connect(str(settings.warehouse))
        assert DUCKDB_LOCK_ERROR in str(info.value)
    finally:
        holder.kill()
        holder.wait()


def test_a_briefly_locked_warehouse_delays_the_step_not_the_run(settings):
    """DuckDBResource retries the connection with backoff (~100 s in all), so a lock held for a
    few seconds only delays the step; longer outages are the step retry policy's."""
    materialize(settings, select=["raw/daily_bars"], partition="2024-06-03")
    holder = hold_warehouse(settings, 3)
    try:
        result = materialize(settings, select=["bronze/daily_bars"], partition="2024-06-03")
        assert holder.poll() is not None  # the step could only write once the holder was gone
    finally:
        holder.kill()
        holder.wait()
    assert result.success
    assert query(settings, "SELECT count(*) AS n FROM bronze.daily_bars")["n"].iloc[0] == 5
