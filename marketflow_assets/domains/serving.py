"""Serving: the read-only snapshot of every served table the other domains define."""

import dagster as dg

from marketflow_assets.assets.serving import build_snapshot_asset, served_asset_keys
from marketflow_assets.domains import Deployment, domain_definitions


def definitions(deployment: Deployment, served: dg.Definitions) -> dg.Definitions:
    """`serving/snapshot` downstream of the served assets of `served` (the other domains)."""
    upstream = served_asset_keys(
        a for a in served.assets or () if isinstance(a, dg.AssetsDefinition)
    )
    return domain_definitions(deployment, assets=[build_snapshot_asset(upstream)])
