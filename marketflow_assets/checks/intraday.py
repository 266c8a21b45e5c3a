"""Checks of the one-minute path, evaluated in the op of silver/intraday_bars_1m over its
in-scope minutes (`_scoped`, loaded once per run).

- row_reconciliation: raw = bronze = silver + rejected minutes per (ticker, session), raw
  counted per (ticker, minute) from the latest fetch, the way bronze picks it (the daily check,
  with interval '1m');
- intraday_vs_daily: for every session whose minutes reach the close and whose daily bar was
  fetched after the close, the day rebuilt from minutes (open, high, low, close, volume) agrees
  with silver.daily_bars within tolerances (`quality` resource). Minute and daily bars are two
  provider products (Yahoo's daily volume includes auction prints the minutes may miss), so a
  disagreement warns rather than blocks.
"""

import dagster as dg
import pandas as pd

from marketflow_assets.calendar import session_hours
from marketflow_assets.checks.framework import WARN, CheckDef, CheckRun, Outcome
from marketflow_assets.checks.silver import reconciliation_check
from marketflow_assets.exchanges import mics_of, ticker_mic_sql

RAW_MINUTES = dg.AssetKey(["raw", "intraday_bars_1m"])
BRONZE_MINUTES = dg.AssetKey(["bronze", "intraday_bars_1m"])
SILVER_DAILY = dg.AssetKey(["silver", "daily_bars"])


def intraday_vs_daily_check() -> CheckDef:
    def evaluate(run: CheckRun) -> Outcome:
        quality = run.resources.quality
        sessions = run.scope.sessions or [
            d.date()
            for d in pd.to_datetime(
                run.df("SELECT DISTINCT session_date FROM _scoped")["session_date"]
            )
        ]
        if not sessions:
            return Outcome(True, "no one-minute bars in scope", 0, 0)
        # Each ticker's own exchange's hours: one calendar lookup per exchange in scope.
        tickers = run.df("SELECT DISTINCT ticker FROM _scoped")["ticker"]
        hours = session_hours(mics_of(tickers), min(sessions), max(sessions))
        hours = hours[["mic", "session_date", "close_utc"]]
        run.con.register("_hours", hours)
        try:
            compared = int(
                run.scalar(
                    f"""
                    SELECT count(*) FROM (
                        SELECT m.ticker, m.session_date FROM _scoped m JOIN _hours h
                            ON h.session_date = m.session_date AND h.mic = {ticker_mic_sql("m.ticker")}
                        GROUP BY ALL HAVING max(m.ts) >= any_value(h.close_utc) - INTERVAL 1 MINUTE
                    ) JOIN silver.daily_bars d USING (ticker, session_date)
                    """
                )
            )
            return run.failures(
                f"""
                WITH days AS (
                    SELECT m.ticker, m.session_date,
                        arg_min(m.open, m.ts) AS open, max(m.high) AS high, min(m.low) AS low,
                        arg_max(m.close, m.ts) AS close, sum(m.volume) AS volume,
                        max(m.ts) AS last_minute, any_value(h.close_utc) AS close_utc
                    FROM _scoped m JOIN _hours h
                        ON h.session_date = m.session_date AND h.mic = {ticker_mic_sql("m.ticker")}
                    GROUP BY ALL
                ),
                compared AS (
                    SELECT m.ticker, m.session_date,
                        m.open AS minutes_open, d.open AS daily_open,
                        m.high AS minutes_high, d.high AS daily_high,
                        m.low AS minutes_low, d.low AS daily_low,
                        m.close AS minutes_close, d.close AS daily_close,
                        m.volume AS minutes_volume, d.volume AS daily_volume,
                        greatest(
                            abs(m.open / d.open - 1), abs(m.high / d.high - 1),
                            abs(m.low / d.low - 1), abs(m.close / d.close - 1)
                        ) AS price_gap,
                        abs(m.volume / nullif(d.volume, 0) - 1) AS volume_gap
                    FROM days m JOIN silver.daily_bars d USING (ticker, session_date)
                    WHERE m.last_minute >= m.close_utc - INTERVAL 1 MINUTE
                      AND d.fetched_at >= m.close_utc
                )
                SELECT * FROM compared WHERE price_gap > ? OR volume_gap > ?
                """,
                [quality.intraday_price_tolerance, quality.intraday_volume_tolerance],
                ok=f"{compared} complete session(s) rebuilt from minutes agree with the daily bars",
                failed="{n} (ticker, session) day(s) rebuilt from minutes disagree with the daily "
                "bar for {tickers} ticker(s)",
                checked=compared,
                metadata={
                    "price_tolerance": quality.intraday_price_tolerance,
                    "volume_tolerance": quality.intraday_volume_tolerance,
                },
            )
        finally:
            run.con.unregister("_hours")

    return CheckDef(
        "intraday_vs_daily",
        "Daily open/high/low/close/volume rebuilt from one-minute bars agree with silver.daily_bars "
        "(relative price and volume tolerances of the `quality` resource), for sessions whose "
        "minutes reach the close and whose daily bar is final.",
        evaluate,
        severity=WARN,
        additional_deps=(SILVER_DAILY,),
    )


def intraday_checks() -> tuple[CheckDef, ...]:
    """Extra checks of silver/intraday_bars_1m, after its contract and keys checks."""
    return (
        reconciliation_check(
            interval="1m",
            dataset="intraday_bars_1m",
            bronze_table="bronze.intraday_bars_1m",
            raw_asset=RAW_MINUTES,
            bronze_asset=BRONZE_MINUTES,
        ),
        intraday_vs_daily_check(),
    )
