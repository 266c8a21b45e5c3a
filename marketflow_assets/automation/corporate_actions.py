"""New splits and dividends: recompute the adjusted history of the tickers concerned.

A fetch that brings a split or dividend adds a row to silver.corporate_actions (its
`first_seen_at` is the provider clock of that fetch). Back-adjustment changes every session
before the ex-date, and gold's windowed indicators (EMA, SMA 200, 52-week highs ...) after it,
so the close run, which builds only the new session, leaves the ticker's older rows on the old
basis. `corporate_action_rebuilds`:

1. reads the rows of silver.corporate_actions first seen after its cursor (a timestamp plus the
   keys seen at exactly that timestamp, so a pinned clock loses nothing);
2. keeps the tickers whose silver rows do not reflect them yet: silver.daily_bars' adjustment
   factor (adj_close / close) must equal the product of the dividend factors and splits after
   each session, and gold.daily_features.adj_close must equal silver's. A ticker whose history
   was built after the action was known (its initial backfill, a new ticker) needs nothing;
3. requests, per batch of up to 100 such tickers, ONE run from the earliest affected layer
   (silver daily and one-minute bars, then gold daily_features and the daily marts and reports)
   over the tickers' whole range (their first session in silver through the latest closed
   session), scoped with the `marketflow/tickers` run tag.

It looks only while no run is queued or in progress (a run may be applying the action, and a
read-only connection from the daemon must not make a run's step meet a locked file), and skips a
tick when the warehouse is still held.
RUNNING by default: one small read-only query every few minutes, no provider calls.
"""

import datetime as dt
import json

import dagster as dg
import duckdb
import pandas as pd

from marketflow_assets.automation.common import (
    ADJUSTMENT_SELECTION,
    AUTOMATION_TAG,
    WarehouseBusy,
    automation_now,
    batches,
    describe_tickers,
    digest,
    first_session,
    latest_closed,
    not_quiet,
    range_tags,
    tickers_tag,
    warehouse_connection,
)
from marketflow_assets.resources import MarketDataResource
from marketflow_assets.storage.warehouse import WarehouseResource
from marketflow_assets.transforms.adjustments import ACTION_SUFFIX_CTES

CORPORATE_ACTIONS_INTERVAL_SECONDS = 300
RELATIVE_TOLERANCE = 1e-6

NEW_ACTIONS_SQL = """
SELECT ticker, ex_date, dividend, split_ratio, first_seen_at
FROM silver.corporate_actions
WHERE $since IS NULL OR first_seen_at >= $since
ORDER BY first_seen_at, ticker, ex_date
"""

# The factor silver must have applied: the suffix products silver's own SQL uses.
SILVER_STALENESS_SQL = f"""
WITH actions AS (
    SELECT * FROM silver.corporate_actions WHERE list_contains($tickers, ticker)
),
{ACTION_SUFFIX_CTES}
bars AS (
    SELECT ticker, session_date, close, adj_close
    FROM silver.daily_bars WHERE list_contains($tickers, ticker)
),
expected AS (
    SELECT b.ticker, b.session_date, b.adj_close,
        b.close * coalesce(d.factor_from, 1.0) / coalesce(s.splits_from, 1.0) AS want
    FROM bars b
    ASOF LEFT JOIN split_suffix s ON b.ticker = s.ticker AND s.ex_date > b.session_date
    ASOF LEFT JOIN dividend_suffix d ON b.ticker = d.ticker AND d.ex_date > b.session_date
)
SELECT ticker,
    min(session_date) AS first_session,
    count(*) FILTER (
        WHERE abs(adj_close - want) > {RELATIVE_TOLERANCE} * greatest(abs(want), 1e-9)
    ) AS stale_rows
FROM expected
GROUP BY ticker
"""

GOLD_STALENESS_SQL = f"""
SELECT g.ticker,
    count(*) FILTER (
        WHERE abs(g.adj_close - s.adj_close) > {RELATIVE_TOLERANCE} * greatest(abs(s.adj_close), 1e-9)
    ) AS stale_rows
FROM gold.daily_features g
JOIN silver.daily_bars s USING (ticker, session_date)
WHERE list_contains($tickers, g.ticker)
GROUP BY g.ticker
"""


def _key(row) -> str:
    return f"{row.ticker}|{pd.Timestamp(row.ex_date).date().isoformat()}"


def new_actions(con: duckdb.DuckDBPyConnection, cursor: dict) -> tuple[pd.DataFrame, dict]:
    """Rows first seen after the cursor, and the cursor that covers them."""
    since = pd.Timestamp(cursor["seen_at"]) if cursor.get("seen_at") else None
    rows = con.execute(NEW_ACTIONS_SQL, {"since": since}).df()
    if rows.empty:
        return rows, cursor
    rows["first_seen_at"] = pd.to_datetime(rows["first_seen_at"], utc=True)
    keys = rows.apply(_key, axis=1)
    seen = set(cursor.get("keys", ())) if since is not None else set()
    fresh = rows[~keys.isin(seen) | (rows["first_seen_at"] > since)] if since is not None else rows
    latest = rows["first_seen_at"].max()
    at_latest = set(keys[rows["first_seen_at"] == latest])
    if since is not None and latest == since:
        at_latest |= seen
    return fresh, {"seen_at": latest.isoformat(), "keys": sorted(at_latest)}


def stale_tickers(con: duckdb.DuckDBPyConnection, tickers: list[str]) -> dict[str, dt.date]:
    """Tickers (of `tickers`) whose silver or gold rows miss an adjustment -> first session."""
    silver = con.execute(SILVER_STALENESS_SQL, {"tickers": tickers}).df()
    first = {r.ticker: pd.Timestamp(r.first_session).date() for r in silver.itertuples(index=False)}
    stale = {r.ticker for r in silver.itertuples(index=False) if r.stale_rows > 0}
    try:
        gold = con.execute(GOLD_STALENESS_SQL, {"tickers": tickers}).df()
        stale |= {r.ticker for r in gold.itertuples(index=False) if r.stale_rows > 0}
    except duckdb.CatalogException:
        pass  # no gold yet: nothing to fix there
    return {t: first[t] for t in sorted(stale) if t in first}


def describe_actions(actions: pd.DataFrame, limit: int = 5) -> str:
    parts = []
    for row in actions.head(limit).itertuples(index=False):
        day = pd.Timestamp(row.ex_date).date()
        if row.split_ratio != 1:
            parts.append(f"{row.ticker} split {row.split_ratio:g}:1 on {day}")
        if row.dividend > 0:
            parts.append(f"{row.ticker} dividend {row.dividend:g} on {day}")
    more = len(actions) - limit
    return "; ".join(parts) + (f"; +{more} more" if more > 0 else "")


@dg.sensor(
    name="corporate_action_rebuilds",
    target=ADJUSTMENT_SELECTION,
    minimum_interval_seconds=CORPORATE_ACTIONS_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "When silver.corporate_actions gains a split or dividend (first_seen_at after the cursor) "
        "that a ticker's silver/gold rows do not reflect yet, recompute that ticker's adjusted "
        "history from the earliest affected layer: silver daily + 1m bars, gold daily_features, "
        "daily marts and reports, over its whole range (first silver session -> latest closed "
        "session), one ticker-scoped run per batch of tickers. Looks only while no run is in "
        "progress. RUNNING by default: one read-only query, no provider calls."
    ),
)
def corporate_actions_sensor(
    context: dg.SensorEvaluationContext,
    warehouse: WarehouseResource,
    market_data: MarketDataResource,
):
    # Any run in progress may be applying the action (silver): check when it is quiet.
    skip = not_quiet(context.instance, warehouse.database)
    if skip:
        return skip
    cursor = json.loads(context.cursor) if context.cursor else {}
    try:
        with warehouse_connection(warehouse.database, read_only=True) as con:
            try:
                actions, new_cursor = new_actions(con, cursor)
            except duckdb.CatalogException:
                return dg.SkipReason("silver.corporate_actions does not exist yet")
            if actions.empty:
                return dg.SkipReason("no split or dividend first seen since the last tick")
            candidates = sorted(actions["ticker"].unique())
            stale = stale_tickers(con, candidates)
    except WarehouseBusy as exc:
        return dg.SkipReason(f"{exc}; trying again next tick")

    context.update_cursor(json.dumps(new_cursor))
    found = describe_actions(actions)
    if not stale:
        return dg.SkipReason(
            f"{len(actions)} new action(s) ({found}); silver and gold already reflect them"
        )
    latest = latest_closed(automation_now(market_data))
    if latest is None:
        return dg.SkipReason("no closed session yet")
    requests = []
    tickers = list(stale)
    for batch in batches(tickers):
        start = max(first_session(context), min(stale[t] for t in batch))
        if start > latest:
            continue
        requests.append(
            dg.RunRequest(
                run_key=f"adjust:{digest(batch, new_cursor.get('seen_at'), start, latest)}",
                tags={
                    AUTOMATION_TAG: "corporate_actions",
                    **range_tags(start, latest),
                    **tickers_tag(batch),
                    "marketflow/change": describe_actions(
                        actions[actions["ticker"].isin(batch)], limit=3
                    )[:200],
                },
            )
        )
    context.log.info(
        f"new corporate actions: {found}; rebuilding {describe_tickers(tickers)} "
        f"in {len(requests)} run(s)"
    )
    return requests or dg.SkipReason("the affected sessions have not closed yet")
