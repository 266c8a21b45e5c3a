"""Column definitions of the served tables, from their single sources of truth: the Python
table contracts (`marketflow_assets.contracts`) and, for the dbt marts, the contracted columns of
`dbt/models/marts/schema.yml`. The BI datasets get their column types and descriptions from here,
never from a copy."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from marketflow_assets.contracts import CONTRACTS

MARTS_SCHEMA = Path(__file__).resolve().parents[2] / "dbt" / "models" / "marts" / "schema.yml"
MARTS_SCHEMA_NAME = "gold"


@dataclass(frozen=True)
class ServedColumn:
    name: str
    sql_type: str  # upper-case DuckDB type
    description: str

    @property
    def is_temporal(self) -> bool:
        return self.sql_type in ("DATE", "TIMESTAMPTZ", "TIMESTAMP")


@dataclass(frozen=True)
class ServedTable:
    table: str
    description: str
    columns: tuple[ServedColumn, ...]

    def column(self, name: str) -> ServedColumn:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.table} has no column {name!r} in its contract")


def _clean(text: str | None) -> str:
    return " ".join((text or "").split())


@cache
def _dbt_marts() -> dict[str, ServedTable]:
    models = yaml.safe_load(MARTS_SCHEMA.read_text())["models"]
    return {
        f"{MARTS_SCHEMA_NAME}.{m['name']}": ServedTable(
            table=f"{MARTS_SCHEMA_NAME}.{m['name']}",
            description=_clean(m.get("description")),
            columns=tuple(
                ServedColumn(
                    c["name"], c["data_type"].upper().replace(" ", ""), _clean(c["description"])
                )
                for c in m["columns"]
            ),
        )
        for m in models
    }


def contracted_tables() -> list[str]:
    """Every table with a contract: the Python contracts and the dbt marts."""
    return sorted({*CONTRACTS, *_dbt_marts()})


def served_table(table: str) -> ServedTable:
    """The contract of a served table, or KeyError naming it."""
    if table in CONTRACTS:
        contract = CONTRACTS[table]
        return ServedTable(
            table=table,
            description=_clean(contract.description),
            columns=tuple(
                ServedColumn(c.name, c.sql_type, _clean(c.description)) for c in contract.columns
            ),
        )
    if table in _dbt_marts():
        return _dbt_marts()[table]
    raise KeyError(f"{table} has no table contract (marketflow_assets.contracts or dbt marts)")
