"""The Dagster definitions: every domain's assets, checks, schedules and sensors, merged and
wired to the environment.

`dagster dev -w workspace.yaml`, `dagster asset materialize -m marketflow_assets ...` and
`from marketflow_assets.definitions import defs` all load this object.
"""

from __future__ import annotations

import dagster as dg

from marketflow_assets.domains import (
    Deployment,
    fundamentals,
    market_data,
    marts,
    operations,
    reports,
    serving,
)
from marketflow_assets.settings import Settings

DOMAINS = (market_data, fundamentals, marts, reports, operations)


def build_definitions(settings: Settings) -> dg.Definitions:
    """Everything built from `settings` alone (`Deployment.from_settings`: partitions and shared
    resources); nothing here or below reads the environment."""
    deployment = Deployment.from_settings(settings)
    domains = dg.Definitions.merge(*(domain.definitions(deployment) for domain in DOMAINS))
    return dg.Definitions.merge(
        domains,
        # Downstream of everything it serves, whatever the other domains define.
        serving.definitions(deployment, domains),
        # Warehouse steps are serialised by the DuckDB pool anyway; running a run's steps in one
        # process saves a Python + Dagster start-up (about 1.5 s) per step.
        dg.Definitions(executor=dg.in_process_executor),
    )


defs = build_definitions(Settings.from_env())
