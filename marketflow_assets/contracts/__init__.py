"""Warehouse table contracts (see `model.py`). `CONTRACTS` maps table name -> contract.

`CONTRACTS` holds every `TableContract` defined at the top level of the layer modules below, so
a new table is declared once, where its layer's tables are; a new layer module is added to
`LAYER_MODULES`.
"""

from __future__ import annotations

from types import ModuleType

import dagster as dg

from marketflow_assets.contracts import bronze, fundamentals, gold, gold_intraday, ops, silver
from marketflow_assets.contracts.model import Col, TableContract

LAYER_MODULES: tuple[ModuleType, ...] = (bronze, silver, gold, gold_intraday, ops, fundamentals)


def contracts_of(modules: tuple[ModuleType, ...]) -> dict[str, TableContract]:
    """The contracts the modules define, by table; two different contracts for one table (a
    copy-paste slip) are an error, the same contract imported into another module is not."""
    found: dict[str, TableContract] = {}
    where: dict[str, str] = {}
    for module in modules:
        for name, value in vars(module).items():
            if not isinstance(value, TableContract):
                continue
            here = f"{module.__name__}.{name}"
            if found.setdefault(value.table, value) is not value:
                raise ValueError(f"two contracts for {value.table}: {where[value.table]}, {here}")
            where.setdefault(value.table, here)
    return found


CONTRACTS: dict[str, TableContract] = contracts_of(LAYER_MODULES)


def contract_for(asset_key: dg.AssetKey) -> TableContract:
    table = ".".join(asset_key.path)
    try:
        return CONTRACTS[table]
    except KeyError:
        raise KeyError(f"no table contract for asset {asset_key.to_user_string()}") from None


__all__ = ["CONTRACTS", "LAYER_MODULES", "Col", "TableContract", "contract_for", "contracts_of"]
