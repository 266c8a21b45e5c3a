"""The asset graph as users see it: validation, layers, kinds, partitions, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from marketflow_assets.definitions import build_definitions
from marketflow_assets.partitions import sessions_partitions_def_for
from marketflow_tests.helpers import FRIDAY_EVENING, make_settings

REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))
LAYERS = ("raw", "bronze", "silver", "gold", "serving")


def cli_env(home: Path) -> dict[str, str]:
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    (home / "dagster" / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    return {
        **os.environ,
        "MARKETFLOW_HOME": str(home),
        "MARKETFLOW_SOURCE": "simulator",
        "MARKETFLOW_TICKERS": "AAPL,KO,^GSPC",
        "MARKETFLOW_SIMULATOR_NOW": FRIDAY_EVENING.isoformat(),
        "DAGSTER_HOME": str(home / "dagster"),
    }


@pytest.fixture(scope="module")
def defs_settings(tmp_path_factory):
    return make_settings(tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def defs(defs_settings):
    return build_definitions(defs_settings)


def test_dagster_definitions_validate(tmp_path):
    done = subprocess.run(
        [DAGSTER, "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env=cli_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_asset_is_grouped_by_layer_described_and_kinded(defs, defs_settings):
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        layer = key.path[0]
        assert layer in LAYERS, key
        assert node.group_name == layer, key
        assert node.description, key
        assert node.kinds, key
        policy = node.backfill_policy
        assert policy == dg.BackfillPolicy.single_run(), key
        if node.partitions_def is not None:
            assert node.partitions_def == sessions_partitions_def_for(defs_settings), key


def test_design_asset_keys_exist(defs):
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    for expected in (
        "raw/daily_bars",
        "raw/company_profiles",
        "bronze/daily_bars",
        "bronze/company_profiles",
        "silver/daily_bars",
        "silver/corporate_actions",
        "silver/symbols",
        "silver/rejected_bars",
        "serving/snapshot",
    ):
        assert expected in keys


@pytest.mark.slow
def test_headless_partition_range_is_one_run(tmp_path):
    env = cli_env(tmp_path)
    done = subprocess.run(
        [
            DAGSTER,
            "asset",
            "materialize",
            "-m",
            "marketflow_assets",
            "--select",
            "*",
            "--partition-range",
            "2024-05-28...2024-06-07",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with dg.DagsterInstance.from_config(str(tmp_path / "dagster")) as instance:
        assert len(instance.get_run_records()) == 1
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    try:
        assert con.execute(
            "SELECT count(DISTINCT session_date), count(DISTINCT ticker) FROM silver.daily_bars"
        ).fetchone() == (9, 3)
    finally:
        con.close()
