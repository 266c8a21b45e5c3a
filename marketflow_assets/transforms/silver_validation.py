"""One validation of bronze daily bars, three outputs: silver.daily_bars (accepted, repaired),
silver.rejected_bars (quarantined, with reasons) and silver.bar_repairs (every repair, before and
after). They come from one classification, so bronze = silver + rejected by construction, and
are written together (assets/silver.py, one multi-asset).

Repairs look at `CONTEXT_DAYS` around the run's sessions (a unit block or an unapplied split is
judged against its neighbours), and only the run's sessions are written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from marketflow_assets.contracts import silver as contracts
from marketflow_assets.storage.warehouse import query_frame
from marketflow_assets.transforms.adjustments import silver_daily_bars_sql
from marketflow_assets.transforms.bar_quality import (
    SCOPE_FILTER,
    classified_bars_sql,
    rejected_bars_sql,
)
from marketflow_assets.transforms.repairs import RepairSwitches
from marketflow_assets.transforms.repairs.bars import RANGE_TOLERANCE, repair_bars

CONTEXT_DAYS = 90
# Bronze rows (context included) validated at a time by a range run: ~0.3 GB of frames.
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
) -> Iterator[ValidatedBars]:
    """`validate_daily_bars` (daily rows only) one batch of whole tickers at a time, about
    `batch_rows` bronze rows each: every rule and repair looks at one ticker's history, so the
    batches give the same rows as one pass, with the memory of one batch whatever the range.
    Each batch's frames are free once the caller drops them."""
    for batch in _ticker_batches(con, start, end, tickers, batch_rows):
        yield _validate(con, start, end, batch, switches)


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


def _validate(
    con: duckdb.DuckDBPyConnection,
    start: dt.date,
    end: dt.date,
    tickers: list[str] | None,
    switches: RepairSwitches,
) -> ValidatedBars:
    """Accepted (repaired), rejected and repair rows of the daily bars of [start, end]."""
    tolerance = RANGE_TOLERANCE if switches.range_widened else 0.0
    classified = query_frame(
        con,
        # In the repairs' order (by ticker and session): reordering a frame of Arrow text columns
        # in pandas costs several times DuckDB's sort.
        f"""SELECT * FROM (
            {classified_bars_sql("1d", tolerance, own_adjustment=switches.adj_close_recomputed)}
        ) ORDER BY ticker, session_date""",
        _context(start, end, tickers),
        # Text columns (ticker, source, fetch id, raw object, ...) only pass through pandas on
        # their way back into DuckDB: as Python strings, out and back cost a third of a batch.
        arrow_text=True,
    )
    in_scope = classified["session_date"].between(pd.Timestamp(start), pd.Timestamp(end))
    rejected = classified[in_scope & classified["reason"].notna()]
    accepted = classified[classified["reason"].isna()]
    del classified, in_scope
    actions = con.execute(
        "SELECT ticker, ex_date, split_ratio, dividend_factor FROM silver.corporate_actions "
        "WHERE $tickers IS NULL OR list_contains($tickers, ticker)",
        {"tickers": tickers},
    ).df()
    repaired, log, quarantined = repair_bars(accepted, actions, switches)
    del accepted

    def scoped(frame: pd.DataFrame) -> pd.DataFrame:
        days = pd.to_datetime(frame["session_date"])
        return frame[days.between(pd.Timestamp(start), pd.Timestamp(end))]

    con.register("accepted_bars", scoped(repaired))
    del repaired
    try:
        silver = query_frame(
            con,
            silver_daily_bars_sql("accepted_bars"),
            {"tickers": tickers, "provider_adjustment": not switches.adj_close_recomputed},
            arrow_text=True,
        )
    finally:
        con.unregister("accepted_bars")
    # Python strings or None, as the repairs write them (the adjustment repair appends to it).
    silver["repair_reason"] = (
        silver["repair_reason"].astype(object).where(silver["repair_reason"].notna(), None)
    )
    log = scoped(log)
    if switches.adj_close_recomputed:
        silver, log = _record_adjustment_repairs(silver, log)

    quarantined = scoped(quarantined)
    if len(quarantined):
        rejected = pd.concat([rejected, quarantined], ignore_index=True)
    rejected = rejected.assign(interval="1d")
    return ValidatedBars(
        bars=silver[contracts.DAILY_BARS.column_names],
        rejected=rejected[contracts.REJECTED_BARS.column_names],
        repairs=log[contracts.BAR_REPAIRS.column_names].reset_index(drop=True),
    )


def _record_adjustment_repairs(
    silver: pd.DataFrame, log: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Bars whose provider Adj Close disagrees with silver's adjustment: reason + log rows."""
    differs = silver["provider_adjustment_differs"].fillna(False).to_numpy(dtype=bool)
    if not differs.any():
        return silver, log
    silver = silver.copy()
    silver["repair_reason"] = np.where(
        differs,
        silver["repair_reason"]
        .fillna("")
        .str.cat(["adj_close_recomputed"] * len(silver), sep=",")
        .str.lstrip(","),
        silver["repair_reason"],
    )
    rows = silver[differs]
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
    log = pd.concat([log, extra], ignore_index=True) if not log.empty else extra
    return silver, log
