"""Which bronze bars silver accepts, and why the others are rejected.

One query classifies every bronze row of a scope (sessions, tickers) exactly once: `reason` is
NULL for the row silver keeps and a reason code (contracts.silver.BAR_REJECTION_REASONS) for
every other row. Silver takes the NULL-reason rows, `silver.rejected_bars` takes the rest, so
bronze rows = silver rows + rejected rows by construction.

Rules, first match wins: missing_value, non_finite_value (+-inf in any value column),
non_session_date (daily) / outside_session_hours (intraday), non_positive_price,
price_out_of_range (above MAX_PRICE: 1e308 is a parse artefact, not a price), negative_volume,
fractional_volume, volume_out_of_range (above MAX_VOLUME, well inside BIGINT, so the cast in
silver can never overflow), high_below_low, open_outside_range, close_outside_range. Among the remaining rows, copies of one (ticker, ts, interval): identical
copies keep one and reject the rest as `duplicate`; copies that disagree are all rejected as
`conflicting_duplicate` (there is no telling which one is right; the completeness check then
reports the missing bar).

Parameters: $start, $end (session dates), $tickers (VARCHAR[] or NULL for all). The intraday
query also reads a registered frame `session_hours` (`calendar.session_hours`: mic, session_date,
open_utc, close_utc, break_start_utc, break_end_utc, timezone), joined on each ticker's own
exchange.
"""

from __future__ import annotations

from typing import Literal

from marketflow_assets.exchanges import ticker_mic_sql

Interval = Literal["1d", "1m"]

_VALUE_COLUMNS = {
    "1d": ("open", "high", "low", "close", "adj_close", "volume", "dividends", "stock_splits"),
    "1m": ("open", "high", "low", "close", "volume"),
}
_TABLES = {"1d": "bronze.daily_bars", "1m": "bronze.intraday_bars_1m"}

# Far above any traded price (BRK-A is ~1e6) or daily volume (~1e10 for the busiest penny stocks),
# far below what breaks arithmetic or the BIGINT volume cast (9.2e18).
MAX_PRICE = 1e9
MAX_VOLUME = 1e15

SCOPE_FILTER = (
    "session_date BETWEEN $start AND $end AND ($tickers IS NULL OR list_contains($tickers, ticker))"
)


def _session_rule(interval: Interval) -> tuple[str, str, str]:
    if interval == "1d":
        return (
            "bar_date <> session_date",
            "non_session_date",
            "'bar dated ' || strftime(bar_date, '%Y-%m-%d (%A)') || ' is not a session of the ticker''s exchange'",
        )
    # Intraday: the minute must start inside its own exchange's regular hours of the session,
    # and not in its lunch break (XTKS, XHKG).
    mic = ticker_mic_sql("src.ticker")
    return (
        f"NOT EXISTS (SELECT 1 FROM session_hours h WHERE h.mic = {mic} "
        "AND h.session_date = src.session_date AND src.ts >= h.open_utc AND src.ts < h.close_utc "
        "AND NOT coalesce(src.ts >= h.break_start_utc AND src.ts < h.break_end_utc, FALSE))",
        "outside_session_hours",
        # e.g. "minute 09:29 XNYS time is outside the regular hours (or the lunch break) of its
        # 2024-06-07 session"
        "'minute ' || strftime(timezone(coalesce((SELECT any_value(h.timezone) FROM session_hours h "
        f"WHERE h.mic = {ticker_mic_sql('ticker')}), 'UTC'), ts), '%H:%M') || ' ' || "
        f"coalesce({ticker_mic_sql('ticker')}, 'unknown exchange') || ' time is outside the regular "
        "hours (or the lunch break) of its ' || strftime(session_date, '%Y-%m-%d') || ' session'",
    )


def classified_bars_sql(
    interval: Interval, range_tolerance: float = 0.0, *, own_adjustment: bool = False
) -> str:
    """Every bronze row in scope with `reason` and `detail` (NULL reason = silver keeps it).
    `range_tolerance`: open/close this far (relative) outside [low, high] is accepted, for the
    range_widened repair (transforms/repairs/bars.py) to widen the range. `own_adjustment`:
    silver computes adj_close from the corporate actions (adj_close_recomputed on), so the
    provider's Adj Close is evidence only: an infinite or absurd one (SSNLF's -inf and 1e36) does
    not cost a bar whose OHLCV is valid; it stays in bronze and the bar says adj_close_recomputed."""
    lo, hi = f"low * (1 - {float(range_tolerance)!r})", f"high * (1 + {float(range_tolerance)!r})"
    values = _VALUE_COLUMNS[interval]
    session_rule, session_reason, session_detail = _session_rule(interval)
    ohlcv = ("open", "high", "low", "close", "volume")
    missing = "ts IS NULL OR " + " OR ".join(f"{c} IS NULL OR isnan({c})" for c in ohlcv)
    missing_list = "CASE WHEN ts IS NULL THEN 'ts' END, " + ", ".join(
        f"CASE WHEN {c} IS NULL OR isnan({c}) THEN '{c}' END" for c in ohlcv
    )
    finite = tuple(c for c in values if not (own_adjustment and c == "adj_close"))
    infinite = " OR ".join(f"isinf(coalesce({c}, 0))" for c in finite)
    infinite_list = ", ".join(f"CASE WHEN isinf(coalesce({c}, 0)) THEN '{c}' END" for c in finite)
    judged_adj = interval == "1d" and not own_adjustment
    prices = ("open", "high", "low", "close", *(("adj_close",) if judged_adj else ()))
    greatest_price = f"greatest({', '.join(f'coalesce({c}, 0)' for c in prices)})"
    return f"""
WITH src AS (
    SELECT * FROM {_TABLES[interval]} WHERE {SCOPE_FILTER}
),
judged AS (
    SELECT *,
        CASE
            WHEN {missing} THEN 'missing_value'
            WHEN {infinite} THEN 'non_finite_value'
            WHEN {session_rule} THEN '{session_reason}'
            WHEN least(open, high, low, close) <= 0 THEN 'non_positive_price'
            WHEN {greatest_price} > {MAX_PRICE} THEN 'price_out_of_range'
            WHEN volume < 0 THEN 'negative_volume'
            WHEN volume <> floor(volume) THEN 'fractional_volume'
            WHEN volume > {MAX_VOLUME} THEN 'volume_out_of_range'
            WHEN high < low THEN 'high_below_low'
            WHEN open < {lo} OR open > {hi} THEN 'open_outside_range'
            WHEN close < {lo} OR close > {hi} THEN 'close_outside_range'
        END AS reason
    FROM src
),
explained AS (
    SELECT *,
        CASE reason
            WHEN 'missing_value' THEN 'NULL or NaN in ' || concat_ws(', ', {missing_list})
            WHEN '{session_reason}' THEN {session_detail}
            WHEN 'non_finite_value' THEN 'infinite ' || concat_ws(', ', {infinite_list})
            WHEN 'non_positive_price' THEN format('open {{}} high {{}} low {{}} close {{}}', open, high, low, close)
            WHEN 'price_out_of_range' THEN format('price {{}} above {MAX_PRICE:g}', {greatest_price})
            WHEN 'negative_volume' THEN format('volume {{}}', volume)
            WHEN 'fractional_volume' THEN format('volume {{}} is not a whole number of shares', volume)
            WHEN 'volume_out_of_range' THEN format('volume {{}} above {MAX_VOLUME:g}', volume)
            WHEN 'high_below_low' THEN format('high {{}} < low {{}}', high, low)
            WHEN 'open_outside_range' THEN format('open {{}} outside [{{}}, {{}}]', open, low, high)
            WHEN 'close_outside_range' THEN format('close {{}} outside [{{}}, {{}}]', close, low, high)
        END AS detail
    FROM judged
),
kept AS (
    SELECT * EXCLUDE (reason, detail) FROM explained WHERE reason IS NULL
),
-- Bars with more than one copy (few): a hash aggregate finds them, and only their rows are
-- ordered and numbered (a window over every bar sorted them all).
copied AS (
    SELECT ticker, ts, interval, count(*) AS n_copies
    FROM kept GROUP BY ticker, ts, interval HAVING count(*) > 1
),
copies AS (
    SELECT k.*, c.n_copies,
        count(DISTINCT hash({", ".join(values)})) OVER bar AS n_variants,
        row_number() OVER (bar ORDER BY k.fetch_id, k.raw_object) AS copy_no
    FROM kept k JOIN copied c ON c.ticker = k.ticker AND c.ts = k.ts AND c.interval = k.interval
    WINDOW bar AS (PARTITION BY k.ticker, k.ts, k.interval)
)
SELECT * EXCLUDE (n_copies, n_variants, copy_no),
    CASE WHEN n_variants > 1 THEN 'conflicting_duplicate' WHEN copy_no > 1 THEN 'duplicate' END AS reason,
    CASE
        WHEN n_variants > 1 THEN format('{{}} rows for this bar with {{}} different values', n_copies, n_variants)
        WHEN copy_no > 1 THEN format('copy {{}} of {{}} identical rows', copy_no, n_copies)
    END AS detail
FROM copies
UNION ALL BY NAME
SELECT k.*, NULL::VARCHAR AS reason, NULL::VARCHAR AS detail
FROM kept k ANTI JOIN copied c ON c.ticker = k.ticker AND c.ts = k.ts AND c.interval = k.interval
UNION ALL BY NAME
SELECT * FROM explained WHERE reason IS NOT NULL
"""


def rejected_bars_sql(intervals: tuple[Interval, ...]) -> str:
    """Rows of `silver.rejected_bars` for the scope, across the given intervals."""
    parts = []
    for interval in intervals:
        daily = interval == "1d"
        parts.append(
            f"""
SELECT ticker, session_date, interval, ts, bar_date, reason, detail, open, high, low, close,
       {"adj_close" if daily else "NULL::DOUBLE AS adj_close"}, volume, source, fetch_id, fetched_at, raw_object
FROM ({classified_bars_sql(interval)}) WHERE reason IS NOT NULL"""
        )
    return "\nUNION ALL\n".join(parts)
