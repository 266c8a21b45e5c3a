"""Helpers for the check tests (no tests here): run only the checks of some assets, read
evaluations and their metadata, copy a built home to corrupt it, write to the warehouse."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb

from marketflow_assets.definitions import build_definitions
from marketflow_assets.settings import Settings
from marketflow_assets.storage.object_store import LocalObjectStore
from marketflow_assets.storage.raw_lake import RawLake

DAILY = [
    "raw/daily_bars",
    "bronze/daily_bars",
    "silver/corporate_actions",
    "silver/daily_bars",
    "silver/rejected_bars",
]
DAILY_AND_GOLD = [*DAILY, "gold/daily_features"]
SILVER = dg.AssetKey(["silver", "daily_bars"])
RAW = dg.AssetKey(["raw", "daily_bars"])
BLOCKING_SILVER_CHECKS = {"contract", "keys", "ohlc_consistency", "row_reconciliation"}


def run_checks(
    settings: Settings,
    *assets: dg.AssetKey,
    partition: str | None = None,
    partition_range: tuple[str, str] | None = None,
    instance: dg.DagsterInstance | None = None,
) -> dg.ExecuteInProcessResult:
    """Execute only the checks of `assets` (no materialization), as the UI's "Execute checks"."""
    defs = build_definitions(settings)
    job = dg.define_asset_job("checks_only", selection=dg.AssetSelection.checks_for_assets(*assets))
    tags = {}
    if partition:
        tags["dagster/partition"] = partition
    if partition_range:
        tags["dagster/asset_partition_range_start"] = partition_range[0]
        tags["dagster/asset_partition_range_end"] = partition_range[1]
    merged = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
    return merged.resolve_job_def("checks_only").execute_in_process(
        tags=tags, instance=instance, raise_on_error=False
    )


def evaluations(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], Any]:
    """{(asset, check name): AssetCheckEvaluation} of a run."""
    return {
        (e.asset_key.to_user_string(), e.check_name): e
        for e in result.get_asset_check_evaluations()
    }


def metadata(evaluation: Any) -> dict[str, Any]:
    return {k: v.value for k, v in evaluation.metadata.items()}


def failed(result: dg.ExecuteInProcessResult) -> set[tuple[str, str]]:
    return {k for k, e in evaluations(result).items() if not e.passed}


def clone(settings: Settings, home: Path) -> Settings:
    """A copy of a built home (lake + warehouse) to corrupt without touching the original."""
    shutil.copytree(settings.home, home, ignore=shutil.ignore_patterns("dagster"))
    return dataclasses.replace(settings, home=home)


def execute(settings: Settings, *statements: str) -> None:
    con = duckdb.connect(str(settings.warehouse))
    try:
        for sql in statements:
            con.execute(sql).fetchall()
    finally:
        con.close()


def lake(settings: Settings) -> RawLake:
    return RawLake(LocalObjectStore(settings.lake_root))


def sessions_of(evaluation: Any) -> set[str]:
    return set(metadata(evaluation).get("failing_sessions", {}))


def tickers_of(evaluation: Any) -> set[str]:
    return set(metadata(evaluation).get("failing_tickers", []))


def only(items: Iterable[Any]) -> Any:
    (item,) = list(items)
    return item
