"""Facts known late: rebuild the gold fundamentals sessions that were built without them.

The close run builds gold.fundamentals_daily for the new session only. A fact version whose
`known_at` falls before sessions already built reaches silver later than those sessions were
built when, e.g., a statements fetch failed for some days and the next one brings a release
dated back, an amended EDGAR filing or a file drop dates a number in the past, or a ticker's
statements come after its prices. The incremental path would never revisit those sessions.
`late_fact_rebuilds`:

1. reads the versions of silver.financial_facts first seen after its cursor (the latest
   `first_seen_at` plus the fetches seen at exactly that time, so a pinned clock loses nothing);
2. for their tickers, recomputes gold (the same SQL the asset runs) from the earliest `known_at`
   among them through the last built session, and compares it with the stored rows: a row
   that differs, or is missing on a built session, is stale. Recomputing, not guessing from
   dates, means sessions built after the fact was known cost nothing and nothing is missed;
3. requests, per batch of up to 100 stale tickers, ONE run of gold/fundamentals_daily and its
   daily followers (the sector mart, the snapshot) over the stale sessions (first -> last),
   scoped with the `marketflow/tickers` run tag.

Like `corporate_action_rebuilds` it looks only while no run is in progress and skips a tick
while the warehouse is held. RUNNING by default: read-only queries, no provider calls.
"""

import datetime as dt
import json

import dagster as dg
import duckdb
import pandas as pd

from marketflow_assets import cadence
from marketflow_assets.automation.common import (
    AUTOMATION_TAG,
    WarehouseBusy,
    batches,
    describe_tickers,
    digest,
    first_session,
    not_quiet,
    range_tags,
    tickers_tag,
    warehouse_connection,
)
from marketflow_assets.contracts.fundamentals import FUNDAMENTALS_DAILY
from marketflow_assets.storage.warehouse import WarehouseResource
from marketflow_assets.transforms.fundamentals import GOLD_FUNDAMENTALS_SQL

LATE_FACTS_INTERVAL_SECONDS = 300
RELATIVE_TOLERANCE = 1e-9
GOLD_FUNDAMENTALS = dg.AssetKey(["gold", "fundamentals_daily"])
REBUILD_SELECTION = dg.AssetSelection.assets(GOLD_FUNDAMENTALS).downstream() & cadence.daily_assets

NEW_VERSIONS_SQL = """
SELECT ticker, fetch_id, first_seen_at, min(known_at) AS earliest_known_at
FROM silver.financial_facts
WHERE $since IS NULL OR first_seen_at > $since
    OR (first_seen_at = $since AND NOT list_contains($seen, fetch_id))
GROUP BY ALL
"""


def _differs(column: str, sql_type: str) -> str:
    if sql_type == "DOUBLE":
        return (
            f"(f.{column} IS NULL) <> (g.{column} IS NULL) OR abs(f.{column} - g.{column}) > "
            f"{RELATIVE_TOLERANCE} * greatest(abs(g.{column}), 1.0)"
        )
    return f"f.{column} IS DISTINCT FROM g.{column}"


_COMPARED = [c for c in FUNDAMENTALS_DAILY.columns if c.name not in FUNDAMENTALS_DAILY.key]
STALE_SESSIONS_SQL = f"""
WITH fresh AS ({GOLD_FUNDAMENTALS_SQL}),
built_sessions AS (
    SELECT DISTINCT session_date FROM gold.fundamentals_daily
    WHERE session_date BETWEEN $start AND $end
),
built AS (
    SELECT * FROM gold.fundamentals_daily
    WHERE session_date BETWEEN $start AND $end AND list_contains($tickers, ticker)
),
compared AS (
    SELECT coalesce(f.ticker, g.ticker) AS ticker,
        coalesce(f.session_date, g.session_date) AS session_date,
        f.ticker IS NULL OR g.ticker IS NULL
            OR {" OR ".join(f"({_differs(c.name, c.sql_type)})" for c in _COMPARED)} AS stale
    FROM fresh f FULL JOIN built g ON f.ticker = g.ticker AND f.session_date = g.session_date
)
SELECT ticker, min(session_date) AS first_stale, max(session_date) AS last_stale,
    count(*) AS stale_sessions
FROM compared
WHERE stale AND session_date IN (SELECT session_date FROM built_sessions)
GROUP BY ticker
ORDER BY ticker
"""


def new_versions(con: duckdb.DuckDBPyConnection, cursor: dict) -> tuple[pd.DataFrame, dict]:
    """Per ticker, the earliest known_at among versions first seen after the cursor; and the
    cursor that covers them."""
    since = pd.Timestamp(cursor["seen_at"]) if cursor.get("seen_at") else None
    seen = list(cursor.get("fetches", [])) if since is not None else []
    rows = con.execute(NEW_VERSIONS_SQL, {"since": since, "seen": seen}).df()
    if rows.empty:
        return rows, cursor
    rows["first_seen_at"] = pd.to_datetime(rows["first_seen_at"], utc=True)
    latest = rows["first_seen_at"].max()
    at_latest = set(rows.loc[rows["first_seen_at"] == latest, "fetch_id"])
    if since is not None and latest == since:
        at_latest |= set(seen)
    per_ticker = rows.groupby("ticker", as_index=False)["earliest_known_at"].min()
    return per_ticker, {"seen_at": latest.isoformat(), "fetches": sorted(at_latest)}


def stale_sessions(con: duckdb.DuckDBPyConnection, versions: pd.DataFrame) -> pd.DataFrame:
    """Tickers of `versions` whose built gold rows differ from a recomputation from silver:
    ticker, first_stale, last_stale, stale_sessions."""
    empty = pd.DataFrame(columns=["ticker", "first_stale", "last_stale", "stale_sessions"])
    try:
        (last_built,) = con.execute(
            "SELECT max(session_date) FROM gold.fundamentals_daily"
        ).fetchone()
    except duckdb.CatalogException:
        return empty  # gold not built yet: nothing to rebuild
    if last_built is None:
        return empty
    start = pd.Timestamp(versions["earliest_known_at"].min()).date()
    if start > last_built:
        return empty  # every new version is known after the last built session
    params = {"start": start, "end": last_built, "tickers": sorted(versions["ticker"])}
    return con.execute(STALE_SESSIONS_SQL, params).df()


@dg.sensor(
    name="late_fact_rebuilds",
    target=REBUILD_SELECTION,
    minimum_interval_seconds=LATE_FACTS_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "When silver.financial_facts gains versions (first_seen_at after the cursor) whose "
        "known_at falls on sessions gold.fundamentals_daily already built, recompute gold for "
        "their tickers, and rebuild the sessions whose rows differ (gold fundamentals, the "
        "sector mart, the snapshot), one ticker-scoped range run per batch of tickers. Looks "
        "only while no run is in progress. RUNNING by default: read-only queries."
    ),
)
def late_facts_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource):
    skip = not_quiet(context.instance, warehouse.database)
    if skip:
        return skip
    cursor = json.loads(context.cursor) if context.cursor else {}
    try:
        with warehouse_connection(warehouse.database, read_only=True) as con:
            try:
                versions, new_cursor = new_versions(con, cursor)
            except duckdb.CatalogException:
                return dg.SkipReason("silver.financial_facts does not exist yet")
            if versions.empty:
                return dg.SkipReason("no fact version first seen since the last tick")
            stale = stale_sessions(con, versions)
    except WarehouseBusy as exc:
        return dg.SkipReason(f"{exc}; trying again next tick")

    context.update_cursor(json.dumps(new_cursor))
    if stale.empty:
        return dg.SkipReason(
            f"new fact versions for {describe_tickers(list(versions['ticker']))}; gold already "
            "reflects them on every built session"
        )
    first_partition = first_session(context)
    requests = []
    tickers = list(stale["ticker"])
    by_ticker = stale.set_index("ticker")
    for batch in batches(tickers):
        start = max(first_partition, _day(by_ticker.loc[batch, "first_stale"].min()))
        end = _day(by_ticker.loc[batch, "last_stale"].max())
        requests.append(
            dg.RunRequest(
                run_key=f"late_facts:{digest(batch, new_cursor['seen_at'], start, end)}",
                tags={
                    AUTOMATION_TAG: "late_facts",
                    **range_tags(start, end),
                    **tickers_tag(batch),
                    "marketflow/change": f"facts known late for {describe_tickers(batch, 5)}",
                },
            )
        )
    context.log.info(
        f"facts known late: {int(stale['stale_sessions'].sum())} stale gold row(s) of "
        f"{describe_tickers(tickers)}; rebuilding in {len(requests)} run(s)"
    )
    return requests


def _day(value) -> dt.date:
    return pd.Timestamp(value).date()
