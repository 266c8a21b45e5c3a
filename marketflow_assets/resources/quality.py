"""Thresholds of the quality checks, as a Dagster resource (`quality`).

Defaults come from `Settings` (MARKETFLOW_FRESHNESS_DELAY_MINUTES) in `build_resources`; any
value can be overridden per run in the launchpad (resources.quality.config) or in code.
"""

import math

import dagster as dg


class QualityResource(dg.ConfigurableResource):
    """Thresholds used by the asset checks in `marketflow_assets.checks`."""

    freshness_delay_minutes: int = 180
    """The latest closed session must be in silver this many minutes after its close."""

    max_daily_move_factor: float = 5.0
    """price_jump flags |ln(close / previous close)| > ln(this) on a day without a split."""

    volume_z_threshold: float = 8.0
    """volume_spike flags a robust z-score of ln(1 + adj_volume) above this."""

    volume_window_sessions: int = 60
    """Trailing window (sessions before the bar) for the volume median and MAD."""

    volume_min_sessions: int = 20
    """A bar needs at least this many earlier bars in the window to be judged."""

    intraday_price_tolerance: float = 0.005
    """intraday_vs_daily: largest relative gap between a day's prices and those rebuilt from
    its minutes."""

    intraday_volume_tolerance: float = 0.10
    """intraday_vs_daily: largest relative gap between the daily volume and the minutes' sum
    (Yahoo's daily volume includes auction prints)."""

    @property
    def max_abs_log_return(self) -> float:
        return math.log(self.max_daily_move_factor)
