"""The Dagster definitions: every asset, check, schedule and sensor, wired to the environment.

`dagster dev -w workspace.yaml`, `dagster asset materialize -m marketflow_assets ...` and
`from marketflow_assets.definitions import defs` all load this object.
"""

from __future__ import annotations

import dagster as dg

from marketflow_assets.assets import (
    bronze,
    dbt,
    fundamentals,
    gold,
    gold_intraday,
    raw,
    reports,
    silver,
)
from marketflow_assets.assets.serving import build_snapshot_asset, served_asset_keys
from marketflow_assets.automation import build_automation
from marketflow_assets.checks import build_asset_checks
from marketflow_assets.partitions import bind_sessions_partitions, sessions_partitions_def_for
from marketflow_assets.resources import build_resources
from marketflow_assets.settings import Settings

ASSET_MODULES = (raw, bronze, silver, gold, gold_intraday, dbt, reports, fundamentals)


def build_definitions(settings: Settings) -> dg.Definitions:
    """Everything built from `settings` alone: partitions (`sessions_partitions_def_for`),
    resources and automation; nothing here or below reads the environment."""
    partitions_def = sessions_partitions_def_for(settings)
    assets = dg.load_assets_from_modules(ASSET_MODULES)
    # Downstream of everything it serves, whatever the other modules define (fundamentals, marts).
    assets = [*assets, build_snapshot_asset(served_asset_keys(assets))]
    assets = bind_sessions_partitions(assets, partitions_def)
    asset_checks = bind_sessions_partitions(build_asset_checks(assets), partitions_def)
    schedules, sensors = build_automation(settings)
    resources = build_resources(settings)
    return dg.Definitions(
        assets=assets,
        asset_checks=asset_checks,
        resources={
            **resources,
            "dbt": dbt.dbt_resource,
            "fundamentals": fundamentals.fundamentals_resource(settings, resources["market_data"]),
        },
        # Warehouse steps are serialised by the DuckDB pool anyway; running a run's steps in one
        # process saves a Python + Dagster start-up (about 1.5 s) per step.
        executor=dg.in_process_executor,
        schedules=schedules,
        sensors=sensors,
    )


defs = build_definitions(Settings.from_env())
