"""How often each asset is refreshed, as an asset tag, and the selections built on it.

Schedules and sensors select assets by cadence, never by name patterns:
- `daily`: the end-of-day path (daily bars, corporate actions, rejected rows, daily features,
  daily marts, reports), refreshed after each close and on catch-up;
- `intraday`: the one-minute path, polled while the market is open;
- `reference`: company profiles and symbols, refreshed daily and when the universe changes.
"""

import dagster as dg

TAG = "marketflow/cadence"
DAILY = {TAG: "daily"}
INTRADAY = {TAG: "intraday"}
REFERENCE = {TAG: "reference"}

daily_assets = dg.AssetSelection.tag(TAG, "daily")
intraday_assets = dg.AssetSelection.tag(TAG, "intraday")
reference_assets = dg.AssetSelection.tag(TAG, "reference")
