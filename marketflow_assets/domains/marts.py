"""dbt marts over silver and gold (their tests are dbt tests, not Python checks)."""

import dagster as dg

from marketflow_assets.assets import dbt
from marketflow_assets.domains import Deployment, domain_definitions


def definitions(deployment: Deployment) -> dg.Definitions:
    return domain_definitions(
        deployment,
        assets=dg.load_assets_from_modules([dbt]),
        resources={"dbt": dbt.dbt_resource},
    )
