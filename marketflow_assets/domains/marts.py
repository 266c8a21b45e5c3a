"""dbt marts over silver and gold (their tests are dbt tests, not Python checks), plus Dagster's
`column_schema_change` check on each mart, fed by the column schema of its enforced dbt contract
(`assets/dbt.py`, `contract_column_schema`)."""

import warnings

import dagster as dg

from marketflow_assets.assets import dbt
from marketflow_assets.domains import Deployment, domain_definitions


def schema_change_checks() -> list[dg.AssetChecksDefinition]:
    """`column_schema_change` on every mart with a contract column schema: a release that changes
    a public mart's columns shows as a WARN on its next materialization, as for the Python tables
    (`checks/__init__.py`)."""
    marts = [
        key
        for key, spec in dbt.dbt_marts.specs_by_key.items()
        if dbt.COLUMN_SCHEMA in spec.metadata
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return list(dg.build_column_schema_change_checks(assets=sorted(marts, key=str)))


def definitions(deployment: Deployment) -> dg.Definitions:
    return dg.Definitions.merge(
        domain_definitions(
            deployment,
            assets=dg.load_assets_from_modules([dbt]),
            resources={"dbt": dbt.dbt_resource},
        ),
        dg.Definitions(asset_checks=schema_change_checks()),
    )
