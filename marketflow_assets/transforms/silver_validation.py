"""One validation of bronze daily bars, three outputs: silver.daily_bars (accepted, repaired),
silver.rejected_bars (quarantined, with reasons) and silver.bar_repairs (every repair, before and
after). They come from one classification, so bronze = silver + rejected by construction, and
are written together (assets/silver.py, one multi-asset).

Repairs look at `CONTEXT_DAYS` around the run's sessions (a unit block or an unapplied split is
judged against its neighbours), and only the run's sessions are written.

The bars stay in DuckDB from bronze to silver; only those a repair can touch go through the
pandas repairs (`_validate`): on clean data almost none, so a range run costs about the SQL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from marketflow_assets.contracts import silver as contracts
from marketflow_assets.storage.warehouse import query_frame
from marketflow_assets.transforms.adjustments import silver_daily_bars_sql
from marketflow_assets.transforms.bar_quality import (
    SCOPE_FILTER,
    classified_bars_sql,
    rejected_bars_sql,
)
from marketflow_assets.transforms.repairs import RepairSwitches
from marketflow_assets.transforms.repairs.bars import (
    RANGE_TOLERANCE,
    level_suspects_sql,
    repair_bars,
    widen_ranges,
)

CONTEXT_DAYS = 90
# Bronze rows (context included) validated at a time by a range run: ~0.2 GB of DuckDB temp
# table and Arrow (more when every ticker needs a repair and goes through pandas). Larger batches
# measured no cheaper (10 years x 500 tickers), and hold more memory.
BATCH_ROWS = 200_000
BRONZE_DAILY = "bronze.daily_bars"


@dataclass(frozen=True)
class ValidatedBars:
    bars: pd.DataFrame  # silver.daily_bars columns
    rejected: pd.DataFrame  # silver.rejected_bars columns, daily (and intraday if asked)
    repairs: pd.DataFrame  # silver.bar_repairs columns


def validate_daily_bars(
    con: duckdb.DuckDBPyConnection,
    start: dt.date,
    end: dt.date,
    tickers: list[str] | None,
    switches: RepairSwitches,
    *,
    session_hours: pd.DataFrame | None = None,
) -> ValidatedBars:
    """Validate and repair the daily bars of [start, end] (and tickers) in one pass. With
    `session_hours` (session_date, open_utc, close_utc) the rejected rows include the intraday
    ones too."""
    result = _validate(con, start, end, tickers, switches)
    if session_hours is None:
        return result
    intraday = intraday_rejected(con, start, end, tickers, session_hours)
    rejected = pd.concat([result.rejected, intraday[result.rejected.columns]], ignore_index=True)
    return ValidatedBars(bars=result.bars, rejected=rejected, repairs=result.repairs)


def validate_daily_bars_in_batches(
    con: duckdb.DuckDBPyConnection,
    start: dt.date,
    end: dt.date,
    tickers: list[str] | None,
    switches: RepairSwitches,
    *,
    batch_rows: int = BATCH_ROWS,
    arrow_bars: bool = False,
) -> Iterator[ValidatedBars]:
    """`validate_daily_bars` (daily rows only) one batch of whole tickers at a time, about
    `batch_rows` bronze rows each: every rule and repair looks at one ticker's history, so the
    batches give the same rows as one pass, with the memory of one batch whatever the range.
    Each batch's frames are free once the caller drops them. `arrow_bars`: the bars as
    Arrow-backed columns (see `_validate`)."""
    for batch in _ticker_batches(con, start, end, tickers, batch_rows):
        yield _validate(con, start, end, batch, switches, arrow_bars=arrow_bars)


def intraday_rejected(
    con: duckdb.DuckDBPyConnection,
    start: dt.date,
    end: dt.date,
    tickers: list[str] | None,
    session_hours: pd.DataFrame,
) -> pd.DataFrame:
    """silver.rejected_bars rows of the intraday bars of [start, end] (and tickers)."""
    con.register("session_hours", session_hours)
    try:
        intraday = con.execute(
            rejected_bars_sql(("1m",)), {"start": start, "end": end, "tickers": tickers}
        ).df()
    finally:
        con.unregister("session_hours")
    return intraday[contracts.REJECTED_BARS.column_names]


def _context(start: dt.date, end: dt.date, tickers: list[str] | None) -> dict:
    return {
        "start": start - dt.timedelta(days=CONTEXT_DAYS),
        "end": end + dt.timedelta(days=CONTEXT_DAYS),
        "tickers": tickers,
    }


def _ticker_batches(
    con: duckdb.DuckDBPyConnection,
    start: dt.date,
    end: dt.date,
    tickers: list[str] | None,
    batch_rows: int,
) -> list[list[str]]:
    """The tickers with bronze daily rows in the validation's context, in batches of about
    `batch_rows` rows (a ticker is never split)."""
    counts = con.execute(
        f"SELECT ticker, count(*) AS n FROM {BRONZE_DAILY} WHERE {SCOPE_FILTER} "
        "GROUP BY ticker ORDER BY ticker",
        _context(start, end, tickers),
    ).df()
    if counts.empty:
        return []
    # batch number: rows before the ticker // batch_rows
    before = counts["n"].cumsum().to_numpy() - counts["n"].to_numpy()
    number = before // max(batch_rows, 1)
    return [list(group) for _, group in counts["ticker"].groupby(number, sort=True)]


# `_validate`'s temp table (one connection's).
_CLASSIFIED = "_silver_classified"
_BRONZE_COLUMNS = (
    "ticker, ts, interval, bar_date, session_date, open, high, low, close, adj_close, volume, "
    "dividends, stock_splits, source, fetch_id, fetched_at, raw_object"
)
_BRONZE_COLUMNS_AS_DATES = _BRONZE_COLUMNS.replace(
    "bar_date, session_date", "bar_date::DATE AS bar_date, session_date::DATE AS session_date"
)


def _validate(
    con: duckdb.DuckDBPyConnection,
    start: dt.date,
    end: dt.date,
    tickers: list[str] | None,
    switches: RepairSwitches,
    *,
    arrow_bars: bool = False,
) -> ValidatedBars:
    """Accepted (repaired), rejected and repair rows of the daily bars of [start, end].

    The bars stay in DuckDB from bronze to silver (a temp table of `con`, then Arrow): only the bars a repair
    can touch pass through pandas, i.e. the whole history of the tickers `level_suspects_sql`
    names (a level shift or spike is judged against the ticker's other bars) and the other
    tickers' bars outside their [low, high] (range widening looks at one bar). On clean data
    that is next to nothing; moving every bar out to pandas and back (text, dates) cost most of
    the step. With `arrow_bars` the bars come as Arrow-backed columns (no conversion: for a
    caller that writes them straight back into DuckDB)."""
    tolerance = RANGE_TOLERANCE if switches.range_widened else 0.0
    scope = {"start": start, "end": end}
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {_CLASSIFIED} AS "
            + classified_bars_sql("1d", tolerance, own_adjustment=switches.adj_close_recomputed),
            _context(start, end, tickers),
        )
        rejected = query_frame(
            con,
            f"SELECT * FROM {_CLASSIFIED} "
            "WHERE reason IS NOT NULL AND session_date BETWEEN $start AND $end",
            scope,
            arrow_text=True,
        )
        suspects, (repaired, log, quarantined) = _repair(con, tickers, switches)
        silver = _silver_bars(
            con, scope, tickers, switches, suspects, _scoped(repaired, start, end)
        )
    finally:
        con.execute(f"DROP TABLE IF EXISTS {_CLASSIFIED}")
    log = _scoped(log, start, end)
    if switches.adj_close_recomputed:
        log = _record_adjustment_repairs(silver, log)
    bars = silver.select(contracts.DAILY_BARS.column_names)
    del silver
    if arrow_bars:
        frame = bars.to_pandas(types_mapper=pd.ArrowDtype)
    else:
        frame = _frame(bars)
        # Python strings or None, as the repairs write them.
        reason = frame["repair_reason"]
        frame["repair_reason"] = reason.astype(object).where(reason.notna(), None)
    quarantined = _scoped(quarantined, start, end)
    if len(quarantined):
        rejected = pd.concat([rejected, quarantined], ignore_index=True)
    rejected = rejected.assign(interval="1d")
    return ValidatedBars(
        bars=frame,
        rejected=rejected[contracts.REJECTED_BARS.column_names],
        repairs=log[contracts.BAR_REPAIRS.column_names].reset_index(drop=True),
    )


def _frame(table: pa.Table) -> pd.DataFrame:
    """As `query_frame(arrow_text=True)` gives it: text as Arrow strings, dates as datetime64."""
    return table.to_pandas(
        types_mapper=lambda t: pd.ArrowDtype(t) if pa.types.is_string(t) else None,
        date_as_object=False,
    )


def _scoped(frame: pd.DataFrame, start: dt.date, end: dt.date) -> pd.DataFrame:
    days = pd.to_datetime(frame["session_date"])
    return frame[days.between(pd.Timestamp(start), pd.Timestamp(end))]


def _touched(switches: RepairSwitches) -> str:
    """The accepted bars of `_CLASSIFIED` a repair can touch ($suspects: `level_suspects_sql`)."""
    outside = " OR open < low OR open > high OR close < low OR close > high"
    return (
        "reason IS NULL AND (list_contains($suspects::VARCHAR[], ticker)"
        f"{outside if switches.range_widened else ''})"
    )


def _repair(
    con: duckdb.DuckDBPyConnection, tickers: list[str] | None, switches: RepairSwitches
) -> tuple[list[str], tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]]:
    """The suspects (`level_suspects_sql`), and `repair_bars` of the accepted bars a repair can
    touch, context included: the suspects' whole histories (`repair_bars`) and the other
    tickers' bars outside their range (`widen_ranges`)."""
    actions = con.execute(
        "SELECT ticker, ex_date, split_ratio, dividend_factor FROM silver.corporate_actions "
        "WHERE $tickers IS NULL OR list_contains($tickers, ticker)",
        {"tickers": tickers},
    ).df()
    accepted = f"(SELECT * FROM {_CLASSIFIED} WHERE reason IS NULL)"
    con.register("_silver_actions", actions)
    try:
        suspects = sorted(
            row[0]
            for row in con.execute(level_suspects_sql(accepted, "_silver_actions")).fetchall()
        )
    finally:
        con.unregister("_silver_actions")
    touched = query_frame(
        con,
        # In the repairs' order (by ticker and session): reordering a frame of Arrow text columns
        # in pandas costs several times DuckDB's sort.
        f"SELECT {_BRONZE_COLUMNS}, list_contains($suspects::VARCHAR[], ticker) AS suspect "
        f"FROM {_CLASSIFIED} WHERE {_touched(switches)} ORDER BY ticker, session_date",
        {"suspects": suspects},
        arrow_text=True,
    )
    suspect = touched.pop("suspect").to_numpy(dtype=bool)
    shifted = repair_bars(touched[suspect], actions, switches)
    widened = widen_ranges(touched[~suspect], switches)
    return suspects, tuple(  # type: ignore[return-value]
        pd.concat([a, b], ignore_index=True) if len(a) and len(b) else (b if len(b) else a)
        for a, b in zip(shifted, widened, strict=True)
    )


def _silver_bars(
    con: duckdb.DuckDBPyConnection,
    scope: dict,
    tickers: list[str] | None,
    switches: RepairSwitches,
    suspects: list[str],
    repaired: pd.DataFrame,
) -> pa.Table:
    """silver.daily_bars rows (and the adjustment columns) of the run's sessions: the untouched
    accepted bars straight from `_CLASSIFIED`, the others from `repaired` (the run's sessions of
    `_repair`'s bars). With adj_close_recomputed, a bar whose provider Adj Close disagrees with
    silver's adjustment has that appended to its repair_reason."""
    accepted = (
        f"SELECT {_BRONZE_COLUMNS}, NULL::VARCHAR AS repair_reason FROM {_CLASSIFIED} "
        f"WHERE reason IS NULL AND NOT ({_touched(switches)}) "
        "AND session_date BETWEEN $start AND $end"
    )
    if len(repaired):
        # dates back from datetime64; the reasons typed even when all are None
        accepted += (
            f" UNION ALL SELECT {_BRONZE_COLUMNS_AS_DATES}, repair_reason::VARCHAR "
            "FROM _silver_repaired"
        )
        con.register("_silver_repaired", repaired)
    try:
        return con.sql(
            "SELECT * REPLACE (CASE WHEN $recomputed AND provider_adjustment_differs "
            "THEN coalesce(repair_reason || ',', '') || 'adj_close_recomputed' "
            "ELSE repair_reason END AS repair_reason) "
            f"FROM ({silver_daily_bars_sql(f'({accepted})')})",
            params={
                **scope,
                "suspects": suspects,
                "tickers": tickers,
                "provider_adjustment": not switches.adj_close_recomputed,
                "recomputed": switches.adj_close_recomputed,
            },
        ).to_arrow_table()
    finally:
        if len(repaired):
            con.unregister("_silver_repaired")


def _record_adjustment_repairs(silver: pa.Table, log: pd.DataFrame) -> pd.DataFrame:
    """`log` and a row per bar of `silver` whose provider Adj Close disagrees with silver's
    adjustment (`_silver_bars` has put it in their repair_reason)."""
    rows = _frame(silver.filter(pc.fill_null(silver["provider_adjustment_differs"], False)))
    if rows.empty:
        return log
    extra = pd.DataFrame(
        {
            "ticker": rows["ticker"],
            "session_date": rows["session_date"],
            "kind": "adj_close_recomputed",
            "factor": rows["silver_adjustment"] / rows["provider_adjustment"],
            "detail": [
                f"provider Adj Close / Close {p:.6g}, from the corporate actions {s:.6g}"
                for p, s in zip(rows["provider_adjustment"], rows["silver_adjustment"], strict=True)
            ],
            **{f"original_{c}": rows[c] for c in ("open", "high", "low", "close", "volume")},
            **{c: rows[c] for c in ("open", "high", "low", "close", "volume")},
            "source": rows["source"],
            "fetch_id": rows["fetch_id"],
            "raw_object": rows["raw_object"],
        }
    )
    return pd.concat([log, extra], ignore_index=True) if not log.empty else extra
