"""MarketFlow: a Dagster software-defined-asset platform for stock-market data.

`defs` is loaded lazily, so importing a submodule (settings, sources, ...) does not build the
whole asset graph; `dagster ... -m marketflow_assets` still finds it.
"""

from __future__ import annotations

import warnings
from typing import Any

# MarketFlow relies on these on purpose (single-run backfills, partitioned asset checks); the
# warnings say so on every import and would drown the CLI output.
warnings.filterwarnings(
    "ignore", message=r"Parameter `(backfill_policy|partitions_def)`", category=Warning
)
warnings.filterwarnings(
    "ignore", message=r".*partitions_def on an AssetCheckSpec", category=Warning
)


def __getattr__(name: str) -> Any:
    if name == "defs":
        from marketflow_assets.definitions import defs

        return defs
    raise AttributeError(f"module 'marketflow_assets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return [*globals(), "defs"]
