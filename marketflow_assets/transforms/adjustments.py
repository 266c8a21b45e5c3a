"""Corporate actions and the two price bases of silver.

Yahoo serves bar D, fetched at F, *as of F*: prices divided (volume multiplied) by every split
with D < ex-date <= F. Silver undoes exactly those splits to get the traded numbers, then
back-adjusts to the latest basis with every known action after D:

    traded  = as_of * S(D, F)                  S(D, F) = product of splits with D < ex <= F
    adj     = traded / S(D, inf) * Q(D)        Q(D)    = product of (1 - div / prev close), ex > D
    adj_vol = traded_vol * S(D, inf)

so silver is the same whatever fetch history produced bronze, and adj_close reproduces the
provider's Adj Close. Both products come from suffix products over the ticker's actions, looked
up with an ASOF join (first action strictly after the date): one pass, no per-row work.

A payload with no action columns at all (some CSV exports) cannot be re-based: its prices are
taken as served and the adjustment factor is the provider's own Adj Close / Close.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from marketflow_assets.contracts import silver as silver_contracts
from marketflow_assets.exchanges import exchange_sessions, listing_of, ticker_timezone_sql
from marketflow_assets.transforms.bar_quality import classified_bars_sql
from marketflow_assets.transforms.repairs import RepairSwitches
from marketflow_assets.transforms.repairs.dividends import repair_dividends


def corporate_actions_frame(
    events: pd.DataFrame, switches: RepairSwitches | None = None
) -> pd.DataFrame:
    """silver.corporate_actions rows from the events recorded in raw fetch manifests.

    Per (ticker, ex-date) the latest fetch's numbers win; first/last seen come from all.
    Dividends are quoted as of their fetch: re-based to the traded basis with the splits
    between the ex-date and that fetch.
    """
    columns = silver_contracts.CORPORATE_ACTIONS.column_names
    if events.empty:
        return pd.DataFrame(columns=columns)
    events = events.assign(
        # A provider may stamp an action on a non-session day; it takes effect at the next open
        # of the ticker's own exchange.
        ex_date=_next_sessions(pd.to_datetime(events["date"]), events["ticker"]),
        # dividend-repair evidence; absent from manifests landed before it was recorded
        **{
            c: events.get(c, np.nan)
            for c in ("open", "adj_ratio", "prev_adj_ratio", "close", "next_open")
        },
        next_date=events.get("next_date", pd.Series(None, index=events.index, dtype=object)),
        # a row without prices; events recorded before this was count as priced
        priced=events.get("priced", pd.Series(True, index=events.index))
        .astype(object)
        .where(lambda v: v.notna(), True)
        .astype(bool),
    )
    con = duckdb.connect()
    try:
        con.register("events", events)
        actions = con.execute(
            f"""
WITH ranked AS (
    SELECT *,
        min(fetched_at) OVER w AS first_seen_at,
        max(fetched_at) OVER w AS last_seen_at,
        row_number() OVER (w ORDER BY fetched_at DESC, fetch_id DESC) AS recency
    FROM events
    WINDOW w AS (PARTITION BY ticker, ex_date)
),
latest AS (SELECT * FROM ranked WHERE recency = 1),
split_suffix AS (
    SELECT ticker, ex_date,
        product(split_ratio) OVER (PARTITION BY ticker ORDER BY ex_date DESC
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS splits_from
    FROM latest WHERE split_ratio <> 1
),
rebased AS (
    SELECT l.*,
        coalesce(after_ex.splits_from, 1.0) / coalesce(after_fetch.splits_from, 1.0) AS splits_to_fetch
    FROM latest l
    ASOF LEFT JOIN split_suffix after_ex
        ON l.ticker = after_ex.ticker AND after_ex.ex_date > l.ex_date
    ASOF LEFT JOIN split_suffix after_fetch
        ON l.ticker = after_fetch.ticker
        AND after_fetch.ex_date > (l.fetched_at AT TIME ZONE {ticker_timezone_sql("l.ticker")})::DATE
)
SELECT
    ticker,
    ex_date::DATE AS ex_date,
    dividend * splits_to_fetch AS dividend,
    split_ratio,
    CASE WHEN dividend > 0 AND prev_close > 0 THEN dividend / prev_close ELSE 0.0 END AS yield_,
    CASE WHEN prev_close > 0 THEN (prev_close - open) / prev_close END AS drop,
    1 - prev_adj_ratio / adj_ratio AS provider_yield,
    CASE WHEN close > 0 THEN (close - next_open) / close END AS next_drop,
    CASE WHEN dividend > 0 AND close > 0 THEN dividend / close END AS next_yield,
    next_date::DATE AS next_date,
    priced,
    first_seen_at,
    last_seen_at,
    source
FROM rebased
ORDER BY ticker, ex_date
"""
        ).df()
    finally:
        con.close()
    actions = repair_dividends(actions, switches or RepairSwitches())
    return actions.assign(dividend_factor=1.0 - actions["yield_"])[columns]


def _next_sessions(dates: pd.Series, tickers: pd.Series) -> pd.Series:
    values = dates.to_numpy().astype("datetime64[D]")
    out = np.empty(len(values), dtype="datetime64[D]")
    mics = tickers.map({t: listing_of(t).mic for t in tickers.unique()}).to_numpy()
    for mic in np.unique(mics):  # one vectorised lookup per exchange
        rows = mics == mic
        sessions = exchange_sessions(mic)
        idx = np.searchsorted(sessions, values[rows], side="left")
        out[rows] = sessions[np.clip(idx, 0, len(sessions) - 1)]
    return pd.Series(out.astype("datetime64[ns]"), index=dates.index)


# The adjustment factors after each ex-date, from a CTE `actions` (rows of
# silver.corporate_actions): the product of the split ratios (`splits_from`) and of the dividend
# factors (`factor_from`) of every action on or after it. A bar's factor is the suffix of the
# first action after its session (an ASOF join on ex_date > session_date).
ACTION_SUFFIX_CTES = """split_suffix AS (
    SELECT ticker, ex_date,
        product(split_ratio) OVER (PARTITION BY ticker ORDER BY ex_date DESC
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS splits_from
    FROM actions WHERE split_ratio <> 1
),
dividend_suffix AS (
    SELECT ticker, ex_date,
        product(dividend_factor) OVER (PARTITION BY ticker ORDER BY ex_date DESC
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS factor_from
    FROM actions WHERE dividend > 0
),"""


def silver_daily_bars_sql(accepted: str = "accepted_bars") -> str:
    """silver.daily_bars rows for the scope ($tickers) from the relation `accepted` (bronze rows
    silver accepted, already repaired: transforms/silver_validation.py). $provider_adjustment:
    take the provider's Adj Close / Close as the dividend adjustment (the adj_close_recomputed
    repair switched off). Extra columns (not in the table) compare the two adjustments."""
    return f"""
WITH accepted AS (
    SELECT * FROM {accepted}
),
actions AS (
    SELECT * FROM silver.corporate_actions
    WHERE $tickers IS NULL OR list_contains($tickers, ticker)
),
{ACTION_SUFFIX_CTES}
-- The fetch's date on the ticker's own exchange clock, once per (ticker, fetch) rather than per
-- bar: a run's bars come from a few fetches, and the time zone is looked up per value. So is the
-- product of the splits after it.
fetch_dates AS (
    SELECT f.ticker, f.fetched_at, f.fetch_date,
        coalesce(after_fetch.splits_from, 1.0) AS splits_after_fetch
    FROM (
        SELECT ticker, fetched_at,
            (fetched_at AT TIME ZONE {ticker_timezone_sql("ticker")})::DATE AS fetch_date
        FROM (SELECT DISTINCT ticker, fetched_at FROM accepted)
    ) f
    ASOF LEFT JOIN split_suffix after_fetch
        ON f.ticker = after_fetch.ticker AND after_fetch.ex_date > f.fetch_date
),
-- Both suffixes at every action date (the first split / dividend on or after it, few rows), so
-- that one ASOF join per bar finds both: the first action after a bar starts both suffixes.
action_suffix AS (
    SELECT d.ticker, d.ex_date, s.splits_from, v.factor_from
    FROM (SELECT ticker, ex_date FROM split_suffix UNION SELECT ticker, ex_date FROM dividend_suffix) d
    ASOF LEFT JOIN split_suffix s ON s.ticker = d.ticker AND s.ex_date >= d.ex_date
    ASOF LEFT JOIN dividend_suffix v ON v.ticker = d.ticker AND v.ex_date >= d.ex_date
),
-- The action factors per (ticker, session): the ASOF join sorts its left side, so it runs on
-- these two columns and the bars take the factors by a hash join.
factors AS (
    SELECT k.ticker, k.session_date,
        coalesce(after_bar.splits_from, 1.0) AS splits_after_bar,
        coalesce(after_bar.factor_from, 1.0) AS dividend_factor_after_bar
    FROM (SELECT DISTINCT ticker, session_date FROM accepted) k
    ASOF LEFT JOIN action_suffix after_bar
        ON k.ticker = after_bar.ticker AND after_bar.ex_date > k.session_date
),
based AS (
    SELECT a.*,
        x.splits_after_bar,
        x.splits_after_bar / coalesce(f.splits_after_fetch, 1.0) AS splits_in_fetch_basis,
        x.dividend_factor_after_bar,
        -- no action columns in the payload: fall back to the provider's own adjustment
        a.dividends IS NULL AND a.stock_splits IS NULL AS provider_adjusted
    FROM accepted a
    LEFT JOIN fetch_dates f
        ON f.ticker = a.ticker AND f.fetched_at IS NOT DISTINCT FROM a.fetched_at
    LEFT JOIN factors x ON x.ticker = a.ticker AND x.session_date = a.session_date
),
traded AS (
    SELECT *,
        CASE WHEN provider_adjusted THEN 1.0 ELSE splits_in_fetch_basis END AS to_traded,
        CASE WHEN provider_adjusted
            THEN coalesce(adj_close / close, 1.0)
            WHEN $provider_adjustment THEN coalesce(adj_close / close, 1.0) / splits_after_bar
            ELSE dividend_factor_after_bar / splits_after_bar END AS price_factor,
        CASE WHEN provider_adjusted THEN 1.0 ELSE splits_after_bar END AS volume_factor
    FROM based
)
SELECT
    t.ticker,
    t.session_date,
    t.open * to_traded AS open,
    t.high * to_traded AS high,
    t.low * to_traded AS low,
    t.close * to_traded AS close,
    CAST(round(t.volume / to_traded) AS BIGINT) AS volume,
    t.open * to_traded * price_factor AS adj_open,
    t.high * to_traded * price_factor AS adj_high,
    t.low * to_traded * price_factor AS adj_low,
    t.close * to_traded * price_factor AS adj_close,
    round(t.volume / to_traded) * volume_factor AS adj_volume,
    coalesce(ca.dividend, 0.0) AS dividend,
    coalesce(ca.split_ratio, 1.0) AS split_ratio,
    t.source,
    t.fetched_at,
    t.repair_reason,
    NOT t.provider_adjusted AND abs(t.adj_close / t.close / t.dividend_factor_after_bar - 1) > 1e-4
        AS provider_adjustment_differs,
    t.adj_close / t.close AS provider_adjustment,
    t.dividend_factor_after_bar AS silver_adjustment,
    t.fetch_id,
    t.raw_object
FROM traded t
LEFT JOIN actions ca ON ca.ticker = t.ticker AND ca.ex_date = t.session_date
"""


def silver_intraday_bars_sql() -> str:
    """silver.intraday_bars_1m rows for the scope ($start, $end, $tickers); reads the registered
    `session_hours` frame. Minutes fetched after a split are re-based to the traded basis the
    same way as daily bars (splits with session < ex-date <= fetch)."""
    return f"""
WITH accepted AS (
    SELECT * FROM ({classified_bars_sql("1m")}) WHERE reason IS NULL
),
split_suffix AS (
    SELECT ticker, ex_date,
        product(split_ratio) OVER (PARTITION BY ticker ORDER BY ex_date DESC
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS splits_from
    FROM silver.corporate_actions
    WHERE split_ratio <> 1 AND ($tickers IS NULL OR list_contains($tickers, ticker))
),
based AS (
    SELECT a.*,
        coalesce(after_bar.splits_from, 1.0) / coalesce(after_fetch.splits_from, 1.0) AS to_traded
    FROM accepted a
    ASOF LEFT JOIN split_suffix after_bar
        ON a.ticker = after_bar.ticker AND after_bar.ex_date > a.session_date
    ASOF LEFT JOIN split_suffix after_fetch
        ON a.ticker = after_fetch.ticker
        AND after_fetch.ex_date > (a.fetched_at AT TIME ZONE {ticker_timezone_sql("a.ticker")})::DATE
)
SELECT ticker, session_date, ts,
    open * to_traded AS open,
    high * to_traded AS high,
    low * to_traded AS low,
    close * to_traded AS close,
    CAST(round(volume / to_traded) AS BIGINT) AS volume,
    source,
    fetched_at
FROM based
"""
