"""Domains: each one declares its Definitions (assets, checks, schedules, sensors, resources);
`definitions.py` merges them.

| domain | assets | automation | own resources |
| --- | --- | --- | --- |
| `market_data.py` | raw -> bronze -> silver -> gold bars, intraday, profiles, corporate actions | daily close, catch-up, intraday poll, universe, corporate actions, file drops | |
| `fundamentals.py` | statements -> facts -> gold fundamentals | late facts | `fundamentals` |
| `marts.py` | the dbt marts | (ride along in the daily runs) | `dbt` |
| `reports.py` | per-ticker HTML reports | | |
| `serving.py` | `serving/snapshot`, downstream of every served table of the others | | |
| `operations.py` | | run and check failure alerts | |

A domain module exposes `definitions(deployment) -> dg.Definitions`, built with `domain_definitions`
below from what it declares; the generic checks (contract, keys, schema changes) come with its
tables. `Deployment` carries what all domains build from: the Settings, their one session
partitions definition and the shared resources (`resources.build_resources`: market data,
universe, lake, warehouse, IO managers, check thresholds, alerting), one object per key as
`Definitions.merge` requires.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from marketflow_assets.checks import build_asset_checks
from marketflow_assets.checks.framework import CheckDef
from marketflow_assets.partitions import bind_sessions_partitions, sessions_partitions_def_for
from marketflow_assets.resources import build_resources
from marketflow_assets.settings import Settings


@dataclass(frozen=True)
class Deployment:
    """What every domain is built from; nothing below it reads the environment."""

    settings: Settings
    partitions_def: dg.PartitionsDefinition
    resources: Mapping[str, Any]

    @classmethod
    def from_settings(cls, settings: Settings) -> Deployment:
        return cls(settings, sessions_partitions_def_for(settings), build_resources(settings))


def domain_definitions(
    deployment: Deployment,
    *,
    assets: Sequence[dg.AssetsDefinition],
    table_checks: Mapping[dg.AssetKey, Sequence[CheckDef]] | None = None,
    raw_suites: Iterable[dg.AssetKey] = (),
    freshness: Iterable[dg.AssetKey] = (),
    schedules: Sequence[dg.ScheduleDefinition] = (),
    sensors: Sequence[dg.SensorDefinition] = (),
    resources: Mapping[str, Any] | None = None,
) -> dg.Definitions:
    """A domain's Definitions: its assets on the deployment's session partitions, their
    generic checks plus the ones it declares, its automation, and the shared resources plus its
    own (`resources`), so each domain also loads on its own (`dagster dev -m` of one domain)."""
    bound = bind_sessions_partitions(assets, deployment.partitions_def)
    checks = build_asset_checks(
        bound, table_checks=table_checks, raw_suites=raw_suites, freshness=freshness
    )
    return dg.Definitions(
        assets=bound,
        asset_checks=bind_sessions_partitions(checks, deployment.partitions_def),
        schedules=list(schedules),
        sensors=list(sensors),
        resources={**deployment.resources, **(resources or {})},
    )
