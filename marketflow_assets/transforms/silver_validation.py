"""One validation of bronze daily bars, three outputs: silver.daily_bars (accepted, repaired),
silver.rejected_bars (quarantined, with reasons) and silver.bar_repairs (every repair, before and
after). They come from one classification, so bronze = silver + rejected by construction, and
are written together (assets/silver.py, one multi-asset).

Repairs look at `CONTEXT_DAYS` around the run's sessions (a unit block or an unapplied split is
judged against its neighbours), and only the run's sessions are written.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from marketflow_assets.contracts import silver as contracts
from marketflow_assets.transforms.adjustments import silver_daily_bars_sql
from marketflow_assets.transforms.bar_quality import classified_bars_sql, rejected_bars_sql
from marketflow_assets.transforms.repairs import RepairSwitches
from marketflow_assets.transforms.repairs.bars import RANGE_TOLERANCE, repair_bars

CONTEXT_DAYS = 90


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
    """Validate and repair the daily bars of [start, end] (and tickers). With `session_hours`
    (session_date, open_utc, close_utc) the rejected rows include the intraday ones too."""
    tolerance = RANGE_TOLERANCE if switches.range_widened else 0.0
    context = {
        "start": start - dt.timedelta(days=CONTEXT_DAYS),
        "end": end + dt.timedelta(days=CONTEXT_DAYS),
        "tickers": tickers,
    }
    classified = con.execute(
        classified_bars_sql("1d", tolerance, own_adjustment=switches.adj_close_recomputed),
        context,
    ).df()
    in_scope = classified["session_date"].between(pd.Timestamp(start), pd.Timestamp(end))
    accepted = classified[classified["reason"].isna()]
    actions = con.execute(
        "SELECT ticker, ex_date, split_ratio, dividend_factor FROM silver.corporate_actions "
        "WHERE $tickers IS NULL OR list_contains($tickers, ticker)",
        {"tickers": tickers},
    ).df()
    repaired, log, quarantined = repair_bars(accepted, actions, switches)

    def scoped(frame: pd.DataFrame) -> pd.DataFrame:
        days = pd.to_datetime(frame["session_date"])
        return frame[days.between(pd.Timestamp(start), pd.Timestamp(end))]

    con.register("accepted_bars", scoped(repaired))
    try:
        silver = con.execute(
            silver_daily_bars_sql("accepted_bars"),
            {"tickers": tickers, "provider_adjustment": not switches.adj_close_recomputed},
        ).df()
    finally:
        con.unregister("accepted_bars")
    log = scoped(log)
    if switches.adj_close_recomputed:
        silver, log = _record_adjustment_repairs(silver, log)

    rejected = pd.concat(
        [classified[in_scope & classified["reason"].notna()], scoped(quarantined)],
        ignore_index=True,
    )
    rejected["interval"] = "1d"
    rejected = rejected[contracts.REJECTED_BARS.column_names]
    if session_hours is not None:
        con.register("session_hours", session_hours)
        try:
            intraday = con.execute(
                rejected_bars_sql(("1m",)), {"start": start, "end": end, "tickers": tickers}
            ).df()
        finally:
            con.unregister("session_hours")
        rejected = pd.concat([rejected, intraday[rejected.columns]], ignore_index=True)
    return ValidatedBars(
        bars=silver[contracts.DAILY_BARS.column_names],
        rejected=rejected,
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
