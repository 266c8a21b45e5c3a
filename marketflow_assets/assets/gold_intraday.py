"""Gold layer, intraday: session VWAP, daily summary from minutes, minute anomalies (SQL).

Every query here works per (ticker, session), so range runs compute a few sessions at a time
(`chunk_sessions`): same rows, memory of one chunk."""

import dagster as dg
import pandas as pd

from marketflow_assets import cadence
from marketflow_assets.assets.silver import scope_params, session_hours
from marketflow_assets.assets.table_asset import table_asset
from marketflow_assets.contracts import gold_intraday as contracts
from marketflow_assets.contracts import silver
from marketflow_assets.exchanges import ticker_mic_sql
from marketflow_assets.partitions import INTRADAY_CHUNK_SESSIONS, sessions_of
from marketflow_assets.resources import MarketDataResource, UniverseResource, ticker_scope
from marketflow_assets.storage.warehouse import TableWrite
from marketflow_assets.transforms.bar_quality import SCOPE_FILTER


def gold_asset(contract):
    """The intraday gold tables: SQL over silver's minutes, refreshed with them."""
    return table_asset(
        contract, cadence=cadence.INTRADAY, kinds={"sql"}, deps=[silver.INTRADAY_BARS_1M]
    )


@gold_asset(contracts.INTRADAY_VWAP)
def intraday_vwap(context: dg.AssetExecutionContext) -> TableWrite:
    return TableWrite(
        rows=f"""
SELECT ticker, session_date, ts,
    (high + low + close) / 3 AS typical_price,
    volume,
    sum(volume) OVER session_so_far AS cum_volume,
    sum((high + low + close) / 3 * volume) OVER session_so_far
        / nullif(sum(volume) OVER session_so_far, 0) AS vwap
FROM silver.intraday_bars_1m
WHERE {SCOPE_FILTER}
WINDOW session_so_far AS (
    PARTITION BY ticker, session_date ORDER BY ts ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
)""",
        params=scope_params(context),
        tickers=ticker_scope(context),
        chunk_sessions=INTRADAY_CHUNK_SESSIONS,
    )


@gold_asset(contracts.INTRADAY_DAILY_SUMMARY)
def intraday_daily_summary(
    context: dg.AssetExecutionContext, market_data: MarketDataResource, universe: UniverseResource
) -> TableWrite:
    hours = session_hours(context, universe, sessions_of(context))
    now = pd.Timestamp(market_data.get_source().now()).tz_convert("UTC")

    # Minutes expected so far on the ticker's own exchange: the whole session once closed, up to
    # the clock while trading, never the lunch break (XTKS, XHKG).
    def elapsed(start: pd.Series, end: pd.Series) -> pd.Series:
        return (end.clip(upper=now) - start.clip(upper=now)).dt.total_seconds().fillna(0) // 60

    lunch = elapsed(hours["break_start_utc"], hours["break_end_utc"])
    hours["minutes_expected"] = (
        (elapsed(hours["open_utc"], hours["close_utc"]) - lunch).clip(lower=0).astype("int64")
    )
    return TableWrite(
        rows=f"""
WITH m AS (SELECT * FROM silver.intraday_bars_1m WHERE {SCOPE_FILTER})
SELECT m.ticker, m.session_date,
    arg_min(m.open, m.ts) AS open,
    max(m.high) AS high,
    min(m.low) AS low,
    arg_max(m.close, m.ts) AS close,
    sum(m.volume)::BIGINT AS volume,
    sum((m.high + m.low + m.close) / 3 * m.volume) / nullif(sum(m.volume), 0) AS vwap,
    count(*) AS minutes_present,
    any_value(h.minutes_expected) AS minutes_expected,
    greatest(any_value(h.minutes_expected) - count(*), 0) AS minutes_missing,
    min(m.ts) AS first_minute,
    max(m.ts) AS last_minute
FROM m
JOIN session_hours h ON h.session_date = m.session_date AND h.mic = {ticker_mic_sql("m.ticker")}
GROUP BY m.ticker, m.session_date""",
        params=scope_params(context),
        tickers=ticker_scope(context),
        chunk_sessions=INTRADAY_CHUNK_SESSIONS,
        frames={"session_hours": hours},
    )


class AnomalyConfig(dg.Config):
    threshold: float = 6.0
    """|robust z| above which a minute is listed."""


@gold_asset(contracts.INTRADAY_ANOMALIES)
def intraday_anomalies(context: dg.AssetExecutionContext, config: AnomalyConfig) -> TableWrite:
    return TableWrite(
        rows=f"""
WITH bars AS (
    SELECT ticker, session_date, ts, volume,
        ln(close / lag(close) OVER (PARTITION BY ticker, session_date ORDER BY ts)) AS ret
    FROM silver.intraday_bars_1m
    WHERE {SCOPE_FILTER}
),
metrics AS (
    SELECT ticker, session_date, ts, 'return' AS metric, ret AS value FROM bars WHERE ret IS NOT NULL
    UNION ALL
    SELECT ticker, session_date, ts, 'volume', ln(1 + volume) FROM bars
),
centred AS (
    SELECT *, median(value) OVER per_session AS median
    FROM metrics WINDOW per_session AS (PARTITION BY ticker, session_date, metric)
),
scored AS (
    -- Scale: 1.4826 x MAD; when most values are equal (MAD = 0, e.g. prices that do not move a
    -- cent), 1.2533 x mean absolute deviation, the usual fallback.
    SELECT *, (value - median) / nullif(coalesce(
        nullif(1.4826 * median(abs(value - median)) OVER per_session, 0),
        1.2533 * avg(abs(value - median)) OVER per_session
    ), 0) AS robust_z
    FROM centred WINDOW per_session AS (PARTITION BY ticker, session_date, metric)
)
SELECT ticker, session_date, ts, metric, value, median, robust_z, $threshold AS threshold
FROM scored
WHERE abs(robust_z) > $threshold""",
        params={**scope_params(context), "threshold": config.threshold},
        tickers=ticker_scope(context),
        chunk_sessions=INTRADAY_CHUNK_SESSIONS,
    )
