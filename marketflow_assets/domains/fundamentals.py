"""Fundamentals: financial statements -> point-in-time facts -> gold ratios per session."""

import dagster as dg

from marketflow_assets.assets import fundamentals
from marketflow_assets.automation import late_facts
from marketflow_assets.checks.fundamentals import fundamentals_checks
from marketflow_assets.domains import Deployment, domain_definitions


def definitions(deployment: Deployment) -> dg.Definitions:
    return domain_definitions(
        deployment,
        assets=dg.load_assets_from_modules([fundamentals]),
        table_checks=fundamentals_checks(),
        sensors=[late_facts.late_facts_sensor],
        resources={
            "fundamentals": fundamentals.fundamentals_resource(
                deployment.settings, deployment.resources["market_data"]
            )
        },
    )
