"""Reports: per-ticker HTML reports and their index, from gold."""

import dagster as dg

from marketflow_assets.assets import reports
from marketflow_assets.domains import Deployment, domain_definitions


def definitions(deployment: Deployment) -> dg.Definitions:
    return domain_definitions(deployment, assets=dg.load_assets_from_modules([reports]))
