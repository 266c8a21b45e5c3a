"""What the BI layer reads: the current serving snapshot and the tables it holds (DESIGN.md,
"Serving"). Superset never opens the warehouse."""

from __future__ import annotations

from pathlib import Path

from marketflow_assets.serving import current_snapshot_path
from marketflow_assets.serving.columns import contracted_tables
from marketflow_assets.serving.tables import EXTRA_TABLES, SERVED_SCHEMAS
from marketflow_assets.settings import Settings


def _is_served(table: str) -> bool:
    """The serving package's rule (`serving.tables.served_tables`): every table of the served
    schemas and the extra tables, except private ones (`_...`)."""
    schema, name = table.split(".", 1)
    return (schema in SERVED_SCHEMAS or (schema, name) in EXTRA_TABLES) and not name.startswith("_")


SERVED_TABLES: tuple[str, ...] = tuple(sorted(t for t in contracted_tables() if _is_served(t)))
"""Tables a snapshot serves that have a contract (marketflow_assets.contracts or the dbt marts):
what datasets may read and SQL Lab lists, with their column descriptions."""


def snapshot_path(settings: Settings) -> Path:
    """The stable path of the current snapshot: replaced atomically on each publish, so a reader
    that opens it per query always sees one whole snapshot."""
    return Path(current_snapshot_path(settings))
