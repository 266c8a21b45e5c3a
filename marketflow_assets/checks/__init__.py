"""Asset checks on every layer: `build_asset_checks(assets)` returns them for the assets present.

- raw bars/profiles (`checks/raw.py`): raw_integrity, payload_schema, provider_errors;
- every warehouse table with a contract, built by Python/SQL assets (dbt marts have dbt tests):
  contract and keys (`checks/table_checks.py`), blocking on silver;
- silver.daily_bars: ohlc_consistency, row_reconciliation, completeness (`checks/silver.py`),
  price_jump, volume_spike (`checks/anomalies.py`), freshness (`checks/freshness.py`);
- Dagster's column_schema_change on the contract-backed tables (`dagster/column_schema` from the
  warehouse IO manager).

One op per table (`checks/framework.py`), in the warehouse pool. Add checks of a table in
`extra_checks()` below (silver/intraday_bars_1m: `checks/intraday.py`).
"""

import dataclasses
import warnings
from collections.abc import Sequence

import dagster as dg

from marketflow_assets.checks import (
    anomalies,
    freshness,
    fundamentals,
    intraday,
    raw,
    repairs,
    silver,
    table_checks,
)
from marketflow_assets.checks.framework import build_suite
from marketflow_assets.contracts import CONTRACTS


def extra_checks() -> dict[dg.AssetKey, tuple]:
    """Checks beyond contract + keys, by asset."""
    return {
        **fundamentals.fundamentals_checks(),
        dg.AssetKey(["silver", "daily_bars"]): (
            silver.ohlc_consistency_check(),
            silver.reconciliation_check(),
            silver.completeness_check(),
            anomalies.price_jump_check(),
            anomalies.volume_spike_check(),
            *repairs.bar_repair_checks(),
        ),
        dg.AssetKey(["silver", "corporate_actions"]): repairs.dividend_repair_checks(),
        dg.AssetKey(["silver", "intraday_bars_1m"]): intraday.intraday_checks(),
    }


RAW_DATASETS = {
    dg.AssetKey(["raw", "daily_bars"]): "daily_bars",
    dg.AssetKey(["raw", "intraday_bars_1m"]): "intraday_bars_1m",
    dg.AssetKey(["raw", "company_profiles"]): "company_profiles",
}
BLOCKING_LAYERS = {"silver"}  # contract and keys failures stop downstream assets
FRESHNESS_ASSETS = (dg.AssetKey(["silver", "daily_bars"]),)


def _specs(assets: Sequence[dg.AssetsDefinition]) -> dict[dg.AssetKey, dg.AssetSpec]:
    return {
        key: spec
        for ad in assets
        if isinstance(ad, dg.AssetsDefinition) and ad.is_executable
        for key, spec in ad.specs_by_key.items()
    }


def build_asset_checks(assets: Sequence[dg.AssetsDefinition]) -> list[dg.AssetChecksDefinition]:
    """The checks of the given assets (others' checks are left out, so any subset works).

    Cost in long single-run backfills: evaluating all checks of raw -> gold over 500 tickers x
    2,520 sessions takes ~4 s; Dagster's own bookkeeping of planned checks in range runs costs
    more (see framework.py, Scope).
    """
    specs = _specs(assets)
    extras = extra_checks()
    suites, tables = [], []
    for key, spec in sorted(specs.items(), key=lambda item: item[0].to_user_string()):
        if key in RAW_DATASETS:
            suites.append(raw.raw_suite(key, RAW_DATASETS[key], spec.partitions_def))
            continue
        contract = CONTRACTS.get(".".join(key.path))
        if contract is None or "dbt" in spec.kinds:
            continue
        extra = tuple(_drop_missing_deps(check, specs) for check in extras.get(key, ()))
        suites.append(
            table_checks.table_suite(
                key,
                contract,
                spec.partitions_def,
                blocking=contract.schema in BLOCKING_LAYERS,
                extra=extra,
            )
        )
        tables.append(key)
    suites += [freshness.freshness_suite(key) for key in FRESHNESS_ASSETS if key in specs]
    checks = [build_suite(suite) for suite in suites]
    if tables:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dg.BetaWarning)
            checks += list(dg.build_column_schema_change_checks(assets=tables))
    return checks


def _drop_missing_deps(check, specs):
    """A check's extra dependencies on assets that are not defined are dropped."""
    deps = tuple(d for d in check.additional_deps if d in specs)
    return (
        check if deps == check.additional_deps else dataclasses.replace(check, additional_deps=deps)
    )


__all__ = ["build_asset_checks", "extra_checks"]
