"""The check framework: which checks exist where (and how they run), the volume check's fast
path against the textbook median/MAD, and Dagster's column-schema change checks."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from marketflow_assets.calendar import xnys
from marketflow_assets.checks import build_asset_checks
from marketflow_assets.checks.anomalies import volume_spike_check
from marketflow_assets.checks.framework import CheckResources, CheckRun, Scope, Suite
from marketflow_assets.contracts import CONTRACTS, TableContract
from marketflow_assets.definitions import build_definitions
from marketflow_assets.partitions import sessions_partitions_def_for
from marketflow_assets.resources import WAREHOUSE_POOL, build_resources
from marketflow_assets.resources.quality import QualityResource
from marketflow_tests.checks_support import evaluations, metadata
from marketflow_tests.helpers import make_settings, materialize


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("defs"))
    defs = build_definitions(settings)
    return defs, defs.resolve_asset_graph(), settings


def test_every_contract_backed_table_and_raw_dataset_has_its_checks(graph):
    _, asset_graph, _ = graph
    checks = {
        (k.asset_key.to_user_string(), k.name): asset_graph.get(k)
        for k in asset_graph.asset_check_keys
    }
    tables = {
        key.to_user_string()
        for key in asset_graph.get_all_asset_keys()
        if ".".join(key.path) in CONTRACTS and "dbt" not in asset_graph.get(key).kinds
    }
    assert {
        "bronze/daily_bars",
        "silver/daily_bars",
        "silver/rejected_bars",
        "gold/daily_features",
    } <= tables
    for table in tables:
        for name in ("contract", "keys", "column_schema_change"):
            assert (table, name) in checks, (table, name)
        blocking = table.startswith("silver/")
        assert checks[(table, "contract")].blocking is blocking
        assert checks[(table, "keys")].blocking is blocking
    for name in ("raw_integrity", "payload_schema", "provider_errors"):
        assert ("raw/daily_bars", name) in checks
    assert checks[("raw/daily_bars", "raw_integrity")].blocking
    # dbt marts are covered by dbt tests, not by contract checks.
    assert ("gold/ma_crossovers", "contract") not in checks
    silver = {name: node for (asset, name), node in checks.items() if asset == "silver/daily_bars"}
    assert {n for n, node in silver.items() if node.blocking} == {
        "contract",
        "keys",
        "ohlc_consistency",
        "row_reconciliation",
    }
    assert {"completeness", "price_jump", "volume_spike", "freshness"} <= set(silver)


def test_check_ops_are_partitioned_like_their_assets_and_run_in_the_warehouse_pool(graph):
    defs, _, settings = graph
    ops = {
        checks_def.node_def.name: checks_def
        for checks_def in defs.asset_checks or ()
        if isinstance(checks_def, dg.AssetChecksDefinition)
    }
    silver = ops["silver__daily_bars_checks"]
    assert silver.node_def.pool == WAREHOUSE_POOL
    sessions = sessions_partitions_def_for(settings)
    assert {spec.partitions_def for spec in silver.check_specs} == {sessions}
    assert ops["silver__daily_bars_freshness"].node_def.pool == WAREHOUSE_POOL
    assert {
        spec.partitions_def for spec in ops["silver__corporate_actions_checks"].check_specs
    } == {None}
    # Every suite op asks for the resources of CheckResources, by its typed parameters.
    typed = {f.name for f in dataclasses.fields(CheckResources)}
    suites = [c for c in ops.values() if c.node_def.name.endswith(("_checks", "_freshness"))]
    assert suites and all(c.node_def.required_resource_keys == typed for c in suites)


def test_checks_of_a_subset_of_assets_only_target_those_assets():
    from marketflow_assets.assets import raw, silver
    from marketflow_assets.checks.fundamentals import fundamentals_checks

    assets = dg.load_assets_from_modules([raw, silver])
    keys = {k for a in assets for k in a.keys}
    # Declarations about assets not given (the fundamentals tables) are ignored.
    checks = build_asset_checks(assets, table_checks=fundamentals_checks())
    targets = {spec.asset_key for c in checks for spec in c.check_specs}
    assert targets <= keys
    assert dg.AssetKey(["silver", "daily_bars"]) in targets


def test_a_domain_keeps_its_checks_dependencies_on_other_domains(settings):
    """fundamentals' coverage check reads silver bars (market data): standalone, the
    domain's Definitions load (with the shared resources) and still name them, so the merged
    graph orders the check after them."""
    from marketflow_assets.domains import Deployment, fundamentals

    defs = fundamentals.definitions(Deployment.from_settings(settings))
    defs.resolve_implicit_global_asset_job_def()  # resources and graph validate on their own
    key = dg.AssetCheckKey(dg.AssetKey(["gold", "fundamentals_daily"]), "coverage")
    (spec,) = (s for c in defs.asset_checks for s in c.check_specs if s.key == key)
    assert dg.AssetKey(["silver", "daily_bars"]) in {d.asset_key for d in spec.additional_deps}
    # ... which this domain does not build (market data does).
    assert not defs.resolve_asset_graph().get(dg.AssetKey(["silver", "daily_bars"])).is_executable


def _volume_run(
    frame: pd.DataFrame, threshold: float, scope: Scope, home: Path
) -> tuple[CheckRun, duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    con.execute(
        "CREATE SCHEMA silver; "
        "CREATE TABLE silver.corporate_actions (ticker VARCHAR, ex_date DATE, split_ratio DOUBLE)"
    )
    con.register("_frame", frame)
    con.execute(
        "CREATE TABLE bars AS SELECT ticker, session_date::DATE AS session_date, adj_volume FROM _frame"
    )
    con.execute(
        f"CREATE VIEW _slice AS SELECT * FROM bars "
        f"WHERE session_date BETWEEN DATE '{scope.lookback_start(60)}' AND DATE '{scope.end}'"
    )
    context = SimpleNamespace(run=SimpleNamespace(run_id="test"))
    deployed = build_resources(make_settings(home))
    resources = CheckResources(
        **{name: deployed[name] for name in ("warehouse", "lake", "market_data", "universe")},
        quality=QualityResource(volume_z_threshold=threshold),
    )
    suite = Suite("volume", dg.AssetKey(["silver", "daily_bars"]), ())
    return CheckRun(context, resources, suite, scope, con, 60, {"scoped_rows": len(frame)}), con


@pytest.mark.parametrize("threshold", [1.0, 3.0, 8.0])
def test_volume_spike_equals_the_textbook_rolling_median_and_mad(threshold, tmp_path):
    rng = np.random.default_rng(7)
    sessions = xnys().sessions_in_range(dt.date(2023, 1, 3), dt.date(2024, 6, 7))
    frames = []
    for n in range(12):
        volume = np.exp(rng.normal(14, 0.4, len(sessions)))
        volume[rng.random(len(sessions)) < 0.03] *= rng.uniform(2, 50)
        volume[rng.random(len(sessions)) < 0.05] = 1000.0  # ties
        frames.append(
            pd.DataFrame({"ticker": f"T{n}", "session_date": sessions, "adj_volume": volume})
        )
    scope = Scope(dt.date(2023, 6, 1), dt.date(2024, 6, 7))
    run, con = _volume_run(pd.concat(frames, ignore_index=True), threshold, scope, tmp_path)
    outcome = volume_spike_check().evaluate(run)
    got = set(con.execute("SELECT ticker, session_date FROM _flags").fetchall())
    textbook = set(
        con.execute(
            f"""
            SELECT ticker, session_date FROM (
                SELECT ticker, session_date, ln(1 + adj_volume) AS x,
                    median(ln(1 + adj_volume)) OVER w AS med,
                    mad(ln(1 + adj_volume)) OVER w AS mad, count(*) OVER w AS n
                FROM _slice
                WINDOW w AS (PARTITION BY ticker ORDER BY session_date
                    ROWS BETWEEN 60 PRECEDING AND 1 PRECEDING))
            WHERE session_date >= DATE '2023-06-01' AND n >= 20 AND mad > 0
                AND (x - med) / (1.4826 * mad) > {threshold}
            """
        ).fetchall()
    )
    assert got == textbook and textbook
    assert outcome.failing_rows == len(textbook)


def test_column_schema_change_is_reported_by_dagsters_check(settings, monkeypatch):
    instance = dg.DagsterInstance.ephemeral()
    select = ["raw/company_profiles", "bronze/company_profiles"]
    first = materialize(settings, select=select, instance=instance)
    assert evaluations(first)[("bronze/company_profiles", "column_schema_change")].passed

    original = TableContract.column_schema

    def with_new_column(self):
        schema = original(self)
        if self.table != "bronze.company_profiles":
            return schema
        return dg.TableSchema(columns=[*schema.columns, dg.TableColumn("exchange_name", "VARCHAR")])

    monkeypatch.setattr(TableContract, "column_schema", with_new_column)
    second = materialize(
        settings,
        select=select,
        instance=instance,
        run_config={"ops": {"raw__company_profiles": {"config": {"refresh": True}}}},
    )
    ev = evaluations(second)[("bronze/company_profiles", "column_schema_change")]
    assert not ev.passed and ev.severity == dg.AssetCheckSeverity.WARN
    assert "Added columns: exchange_name" in ev.description
    contract = evaluations(second)[("bronze/company_profiles", "contract")]
    assert contract.passed and metadata(contract)["scope"] == "whole table"
