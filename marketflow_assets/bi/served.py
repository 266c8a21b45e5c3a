"""What the BI layer reads: the current serving snapshot and the tables it holds (DESIGN.md,
"Serving"). Superset never opens the warehouse."""

from __future__ import annotations

from pathlib import Path

from marketflow_assets.settings import Settings

# Tables of the serving snapshot, under the warehouse's own names, that dashboards may use.
SERVED_TABLES = (
    "silver.daily_bars",
    "silver.symbols",
    "silver.corporate_actions",
    "silver.rejected_bars",
    "silver.intraday_bars_1m",
    "gold.daily_features",
    "gold.ma_crossovers",
    "gold.sector_daily",
    "gold.monthly_returns",
    "gold.hourly_bars",
    "gold.intraday_vwap",
    "gold.intraday_daily_summary",
    "gold.intraday_anomalies",
    "ops.check_results",
)


def snapshot_path(settings: Settings) -> Path:
    """The stable path of the current snapshot: replaced atomically on each publish, so a reader
    that opens it per query always sees one whole snapshot."""
    try:
        from marketflow_assets.serving import current_snapshot_path
    except ImportError:  # before the serving layer lands, its documented location
        return settings.home / "serving" / "current.duckdb"
    return Path(current_snapshot_path(settings))
