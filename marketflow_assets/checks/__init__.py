"""Asset checks on every layer: `build_asset_checks(assets, ...)` returns those of the given assets.

Generic, for every asset passed in:
- every warehouse table with a contract, built by Python/SQL assets (dbt marts have dbt tests):
  contract and keys (`checks/table_checks.py`), blocking on silver (`BLOCKING_LAYERS`);
- Dagster's column_schema_change on the contract-backed tables (`dagster/column_schema` from the
  warehouse IO manager).

Declared by the domain that owns the assets (`marketflow_assets/domains/`):
- `table_checks`: checks beyond contract + keys, by asset, evaluated in the table's suite
  (silver.daily_bars: `checks/silver.py`, `checks/anomalies.py`, `checks/repairs.py`;
  silver/intraday_bars_1m: `checks/intraday.py`; fundamentals: `checks/fundamentals.py`);
- `raw_suites`: raw assets whose lake objects get raw_integrity, payload_schema and
  provider_errors (`checks/raw.py`; the dataset is the key's last part);
- `freshness`: assets whose latest closed session must land in time (`checks/freshness.py`).

One op per table (`checks/framework.py`), in the warehouse pool.
"""

import warnings
from collections.abc import Iterable, Mapping, Sequence

import dagster as dg

from marketflow_assets.checks.framework import CheckDef, build_suite
from marketflow_assets.checks.freshness import freshness_suite
from marketflow_assets.checks.raw import raw_suite
from marketflow_assets.checks.table_checks import table_suite
from marketflow_assets.contracts import CONTRACTS

BLOCKING_LAYERS = {"silver"}  # contract and keys failures stop downstream assets


def _specs(assets: Sequence[dg.AssetsDefinition]) -> dict[dg.AssetKey, dg.AssetSpec]:
    return {
        key: spec
        for ad in assets
        if isinstance(ad, dg.AssetsDefinition) and ad.is_executable
        for key, spec in ad.specs_by_key.items()
    }


def build_asset_checks(
    assets: Sequence[dg.AssetsDefinition],
    *,
    table_checks: Mapping[dg.AssetKey, Sequence[CheckDef]] | None = None,
    raw_suites: Iterable[dg.AssetKey] = (),
    freshness: Iterable[dg.AssetKey] = (),
) -> list[dg.AssetChecksDefinition]:
    """The checks of the given assets: the generic ones plus those declared for them (see the
    module docstring); declarations about assets not given are ignored, so any subset works.
    A check's extra dependencies may name another domain's assets: they meet in the merged
    definitions (Dagster accepts a dependency on an asset a Definitions does not hold).

    Cost in long single-run backfills: evaluating all checks of raw -> gold over 500 tickers x
    2,520 sessions takes ~4 s; Dagster's own bookkeeping of planned checks in range runs costs
    more (see framework.py, Scope).
    """
    specs = _specs(assets)
    extras = table_checks or {}
    raw_keys = set(raw_suites)
    suites, tables = [], []
    for key, spec in sorted(specs.items(), key=lambda item: item[0].to_user_string()):
        if key in raw_keys:
            suites.append(raw_suite(key, key.path[-1], spec.partitions_def))
            continue
        contract = CONTRACTS.get(".".join(key.path))
        if contract is None or "dbt" in spec.kinds:
            continue
        suites.append(
            table_suite(
                key,
                contract,
                spec.partitions_def,
                blocking=contract.schema in BLOCKING_LAYERS,
                extra=tuple(extras.get(key, ())),
            )
        )
        tables.append(key)
    suites += [freshness_suite(key) for key in freshness if key in specs]
    checks = [build_suite(suite) for suite in suites]
    if tables:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dg.BetaWarning)
            checks += list(dg.build_column_schema_change_checks(assets=tables))
    return checks


__all__ = ["BLOCKING_LAYERS", "build_asset_checks"]
