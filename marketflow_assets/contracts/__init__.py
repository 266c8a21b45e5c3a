"""Warehouse table contracts (see `model.py`). `CONTRACTS` maps table name -> contract."""

from __future__ import annotations

import dagster as dg

from marketflow_assets.contracts import bronze, fundamentals, gold, gold_intraday, ops, silver
from marketflow_assets.contracts.model import Col, TableContract

CONTRACTS: dict[str, TableContract] = {
    c.table: c
    for c in (
        bronze.DAILY_BARS,
        bronze.INTRADAY_BARS_1M,
        bronze.COMPANY_PROFILES,
        silver.DAILY_BARS,
        silver.INTRADAY_BARS_1M,
        silver.REJECTED_BARS,
        silver.BAR_REPAIRS,
        silver.CORPORATE_ACTIONS,
        silver.SYMBOLS,
        silver.SESSION_HOURS,
        gold.DAILY_FEATURES,
        gold_intraday.INTRADAY_VWAP,
        gold_intraday.INTRADAY_DAILY_SUMMARY,
        gold_intraday.INTRADAY_ANOMALIES,
        ops.CHECK_RESULTS,
        ops.ANOMALIES,
        ops.ALERT_HISTORY,
        *fundamentals.CONTRACTS,
    )
}


def register(*contracts: TableContract) -> None:
    """Later layers (gold, ops) add their contracts here at import time."""
    for contract in contracts:
        CONTRACTS[contract.table] = contract


def contract_for(asset_key: dg.AssetKey) -> TableContract:
    table = ".".join(asset_key.path)
    try:
        return CONTRACTS[table]
    except KeyError:
        raise KeyError(f"no table contract for asset {asset_key.to_user_string()}") from None


__all__ = ["CONTRACTS", "Col", "TableContract", "contract_for", "register"]
