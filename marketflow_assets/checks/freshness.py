"""`freshness` on silver.daily_bars (WARN, unpartitioned: it judges the table as of now).

The due session is the latest NYSE session whose close is at least `freshness_delay_minutes`
(quality resource; MARKETFLOW_FRESHNESS_DELAY_MINUTES, default 180) before the provider's
clock (`market_data`'s source.now(), so the simulator's clock is honoured). Every ticker of the
universe that has bars must have one for the due session. Run it on a schedule, or with any
materialization of silver/daily_bars (it is part of the asset's checks).

Why not Dagster's own freshness (evaluated for Dagster 1.13; figures in
marketflow_tests/test_freshness_due_session.py):
- `build_time_partition_freshness_checks` (superseded since 1.12) expects the partition of the
  last partition window at its latest deadline tick. Our session partitions have `end_offset=1`
  (dagster-io/dagster#33551), so on a holiday evening that is the next, unopened session
  (Thanksgiving 2024 at 19:00 ET: 2024-11-29): it would fail on every NYSE holiday, and a
  deadline cron cannot tell a holiday from a session. It also counts any materialization of the
  partition, so a ticker-scoped run (a file drop for one ticker) would pass it.
- `FreshnessPolicy` (1.11+, the successor): judged per asset on its last materialization of
  any partition, so backfilling an old session makes the asset "fresh"; the cron form fails
  on holidays for the same reason, the time-window form only with a window longer than the
  longest market closure (4+ days), which says little.
- Both read the wall clock; this check reads the provider's, so demos and tests with a pinned
  simulator clock judge the same sessions the pipeline loaded.
What only this check says: which tickers of the universe lack the due session (the exchange
calendar's, early closes and holidays included), and how many sessions behind each one is.
"""

import datetime as dt

import dagster as dg
import pandas as pd

from marketflow_assets.calendar import EXCHANGE_TZ, xnys
from marketflow_assets.checks.framework import WARN, CheckDef, CheckRun, Outcome, Suite


def due_session(now: dt.datetime, delay_minutes: int) -> tuple[dt.date | None, dt.datetime | None]:
    """The latest session that must be loaded at `now`, and its deadline (close + delay)."""
    cal = xnys()
    session = cal.latest_closed_session(now - dt.timedelta(minutes=delay_minutes))
    if session is None:
        return None, None
    return session, cal.close_utc(session) + dt.timedelta(minutes=delay_minutes)


def freshness_check() -> CheckDef:
    def evaluate(run: CheckRun) -> Outcome:
        now = run.resources.market_data.get_source().now()
        delay = int(run.resources.quality.freshness_delay_minutes)
        due, deadline = due_session(now, delay)
        universe = run.resources.universe.symbols()
        latest = run.df(
            "SELECT ticker, max(session_date) AS latest_session FROM silver.daily_bars "
            "WHERE list_contains(?, ticker) GROUP BY ALL",
            [universe],
        )
        cal = xnys()
        behind = []
        for ticker, last in zip(latest["ticker"], latest["latest_session"], strict=True):
            last = pd.Timestamp(last).date()
            if due is not None and last < due:
                behind.append(
                    {
                        "ticker": ticker,
                        "session_date": last,
                        "due_session": due,
                        "sessions_behind": len(cal.sessions_in_range(last, due)) - 1,
                    }
                )
        frame = pd.DataFrame(
            behind, columns=["ticker", "session_date", "due_session", "sessions_behind"]
        )
        frame["session_date"] = pd.to_datetime(frame["session_date"])
        frame["due_session"] = pd.to_datetime(frame["due_session"])
        loaded = latest["latest_session"].max() if len(latest) else None
        metadata = {
            "provider_clock": now.isoformat(),
            "due_session": due.isoformat() if due else None,
            "deadline": deadline.astimezone(EXCHANGE_TZ).isoformat() if deadline else None,
            "delay_minutes": delay,
            "latest_loaded_session": pd.Timestamp(loaded).date().isoformat()
            if loaded is not None and not pd.isna(loaded)
            else None,
            "tickers_never_loaded": sorted(set(universe) - set(latest["ticker"])),
        }
        if latest.empty:
            return Outcome(
                False,
                "silver.daily_bars holds no bar of the universe yet",
                failing_rows=len(universe),
                checked_rows=len(universe),
                tickers=sorted(universe),
                metadata=metadata,
            )
        run.con.register("_behind", frame)
        try:
            return run.failures(
                "SELECT * FROM _behind",
                ok=f"every ticker has the due session {due} (provider clock {now:%Y-%m-%d %H:%M} "
                f"UTC, {delay} min after the close)",
                failed="{n} ticker(s) lack the due session "
                + f"{due} (deadline {metadata['deadline']}); latest loaded "
                f"{metadata['latest_loaded_session']}",
                checked=len(latest),
                order="sessions_behind DESC, ticker",
                metadata=metadata,
            )
        finally:
            run.con.unregister("_behind")

    return CheckDef(
        name="freshness",
        description=(
            "The latest closed NYSE session (exchange calendar, provider clock) is in "
            "silver.daily_bars for every ticker of the universe that has bars, once "
            "freshness_delay_minutes (default 180) have passed since its close. Failing rows: "
            "tickers behind, with their latest session. WARN."
        ),
        evaluate=evaluate,
        severity=WARN,
    )


def freshness_suite(asset_key: dg.AssetKey) -> Suite:
    return Suite(
        name=f"{asset_key.to_python_identifier()}_freshness",
        asset_key=asset_key,
        checks=(freshness_check(),),
        partitions_def=None,
        description="Whether the latest closed session is loaded, by the provider's clock.",
    )
