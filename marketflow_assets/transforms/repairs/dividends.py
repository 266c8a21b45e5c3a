"""Dividend repairs on silver.corporate_actions, judged with the evidence each event carries.

Per dividend: its yield y = dividend / previous close (same basis), and the price drop at the
ex-date open, (previous close - open) / previous close, recorded with the event when it was
fetched. A real dividend leaves a drop of its size; Yahoo's unit errors do not.

dividend_unit, too large: y > 1 (a dividend above the share price), or y > 10% with a drop under
a tenth of it: divided by 100 (GBp vs GBP, cents vs units).
dividend_unit, too small: per ticker, at least 3 dividends under 0.1% whose median drop is 30x
their median yield or more, or a single one that is 1/100 of the ticker's other dividends (within
2x) and comes with a drop of 50x its yield: multiplied by 100. Tiny real dividends (ETF residuals)
have neither.
dividend_unit, split: on a split's ex-date, a dividend in pre-split terms while the provider's
own Adj Close step gives the post-split amount: divided by the split ratio.
dividend_date: a dividend over 10% of the previous close with no drop of a tenth of it at its
ex-date open, but one of a quarter of it at the next priced session's open (from its own close): the provider dated
it a session early. Moved to that session with its amount (it is confirmed there), yield against
its dated session's close.
dividend_unpriced: a dividend on a row the provider gives no prices for. No price before or after
confirms it and no adjustment step can be sized from that day: kept with its original amount,
dividend 0 (not applied to adj_close).
dividend_duplicate: two dividends of one ticker within `DUPLICATE_DAYS` days (after the unit
repair): equal amounts keep the later (Yahoo's phantom comes first), different amounts keep the
earlier. The dropped one stays in the table with dividend 0 and its original amount.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from marketflow_assets.transforms.repairs import RepairSwitches

DUPLICATE_DAYS = 7
TOO_LARGE_YIELD = 0.10
TINY_YIELD = 0.001
# Moving a dividend takes more evidence than keeping one: the next session's opening drop must be
# a quarter of the dividend (SCR.TO 0.441 on 2.88: 4.5% of 15.3%), not the tenth that confirms one
# on its own date (ABDP.L's 100x dividends sit next to ordinary 1% moves).
SHIFT_DROP = 0.25


def repair_dividends(actions: pd.DataFrame, switches: RepairSwitches) -> pd.DataFrame:
    """`actions` (one row per ticker and ex-date: dividend, split_ratio, yield_, drop,
    provider_yield) with dividend repaired
    and `original_dividend`, `repair_reason`, `repair_detail` filled where it was."""
    out = actions.sort_values(["ticker", "ex_date"], kind="stable").reset_index(drop=True)
    out["original_dividend"] = np.nan
    out["repair_reason"] = None
    out["repair_detail"] = None
    is_div = (out["dividend"] > 0).to_numpy()
    y = out["yield_"].to_numpy(dtype=float)
    drop = out["drop"].to_numpy(dtype=float)

    def record(hit: np.ndarray, kind: str, details: list[str]) -> None:
        out.loc[hit, "original_dividend"] = out.loc[hit, "original_dividend"].fillna(
            out.loc[hit, "dividend"]
        )
        out.loc[hit, "repair_reason"] = kind
        out.loc[hit, "repair_detail"] = details

    priced = (
        out["priced"].astype(object).where(out["priced"].notna(), True).to_numpy(dtype=bool)
        if "priced" in out
        else np.ones(len(out), dtype=bool)
    )
    if switches.dividend_unpriced:
        unpriced = is_div & ~priced
        record(
            unpriced,
            "dividend_unpriced",
            [
                f"dividend {d:g} on a date without prices: unconfirmed, not applied"
                for d in out.loc[unpriced, "dividend"]
            ],
        )
        out.loc[unpriced, ["dividend", "yield_"]] = 0.0
        is_div = is_div & ~unpriced

    shifted = np.zeros(len(out), dtype=bool)
    if switches.dividend_date and "next_drop" in out:
        next_drop = out["next_drop"].to_numpy(dtype=float)
        next_y = out["next_yield"].to_numpy(dtype=float)
        shifted = (
            is_div
            & (y > TOO_LARGE_YIELD)
            & (y <= 1)
            & (drop < y / 10)
            & (next_drop >= next_y * SHIFT_DROP)
            & out["next_date"].notna().to_numpy()
        )
        record(
            shifted,
            "dividend_date",
            [
                f"dividend {d:g} dated {pd.Timestamp(e).date()} ({y_:.2%}) with a {dr:.2%} drop "
                f"there and {nd:.2%} at the next session's open: moved to {pd.Timestamp(n).date()}"
                for d, e, y_, dr, nd, n in zip(
                    out.loc[shifted, "dividend"],
                    out.loc[shifted, "ex_date"],
                    y[shifted],
                    drop[shifted],
                    next_drop[shifted],
                    out.loc[shifted, "next_date"],
                    strict=True,
                )
            ],
        )
        moved = pd.to_datetime(out.loc[shifted, "next_date"])
        is_datetime = pd.api.types.is_datetime64_any_dtype(out["ex_date"])
        out.loc[shifted, "ex_date"] = moved.to_numpy() if is_datetime else moved.dt.date
        out.loc[shifted, "yield_"] = next_y[shifted]
        y = out["yield_"].to_numpy(dtype=float)
        out = out.sort_values(["ticker", "ex_date"], kind="stable")
        order = out.index.to_numpy()
        y, drop, is_div, shifted = y[order], drop[order], is_div[order], shifted[order]
        out = out.reset_index(drop=True)

    scale = np.ones(len(out))
    if switches.dividend_unit:
        too_large = is_div & ~shifted & ((y > 1) | ((y > TOO_LARGE_YIELD) & (drop < y / 10)))
        tiny = is_div & (y < TINY_YIELD)
        grouped = pd.DataFrame({"ticker": out["ticker"], "y": y, "drop": drop})[tiny]
        stats = grouped.groupby("ticker").agg(
            n=("y", "size"), y=("y", "median"), d=("drop", "median")
        )
        systematic = stats.index[(stats["n"] >= 3) & (stats["d"] >= 30 * stats["y"])]
        others = (
            pd.DataFrame({"ticker": out["ticker"], "d": out["dividend"]})[is_div & ~tiny]
            .groupby("ticker")["d"]
            .median()
        )
        ratio = (out["dividend"] / out["ticker"].map(others)).to_numpy(dtype=float)
        lone = tiny & (ratio > 0.005) & (ratio < 0.02) & (drop >= 50 * y)
        too_small = tiny & (out["ticker"].isin(systematic).to_numpy() | lone)
        # Paid on a split's ex-date in pre-split terms (4063.T: 275 JPY with a 5:1 split, 55 in
        # post-split terms) while the provider's own Adj Close step says the split-adjusted amount.
        ratio_split = out["split_ratio"].to_numpy(dtype=float)
        provider_y = out["provider_yield"].to_numpy(dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            mismatch = np.abs(y / (provider_y * ratio_split) - 1)
        unsplit = is_div & (ratio_split != 1) & (mismatch < 0.05)
        scale = np.where(
            too_large, 0.01, np.where(too_small, 100.0, np.where(unsplit, 1 / ratio_split, 1.0))
        )
        hit = scale != 1
        out.loc[hit, "original_dividend"] = out.loc[hit, "dividend"]
        out.loc[hit, "repair_reason"] = "dividend_unit"
        out.loc[hit, "repair_detail"] = [
            f"dividend {d:g} is {y_:.4%} of the previous close with a {dr:.2%} drop at the open; "
            f"x{s:g}"
            for d, y_, dr, s in zip(
                out.loc[hit, "dividend"], y[hit], drop[hit], scale[hit], strict=True
            )
        ]
        out["dividend"] = out["dividend"] * scale
        out["yield_"] = out["yield_"] * scale

    if switches.dividend_duplicate:
        divs = out[out["dividend"] > 0]
        nxt = divs.groupby("ticker")[["ex_date", "dividend"]].shift(-1)
        nxt_row = divs.index.to_series().groupby(divs["ticker"]).shift(-1)
        gap = (pd.to_datetime(nxt["ex_date"]) - pd.to_datetime(divs["ex_date"])).dt.days
        pair = gap.le(DUPLICATE_DAYS).to_numpy()
        same = np.isclose(divs["dividend"], nxt["dividend"].fillna(-1), rtol=0.02)[pair]
        earlier, later = divs.index[pair], nxt_row[pair].astype(int).to_numpy()
        # equal amounts: the earlier is the phantom; different amounts: the later is
        dropped = np.where(same, earlier, later)
        kept = np.where(same, later, earlier)
        dropped_ix = pd.Index(dropped)
        out.loc[dropped_ix, "original_dividend"] = out.loc[dropped_ix, "original_dividend"].fillna(
            out.loc[dropped_ix, "dividend"]
        )
        out.loc[dropped_ix, "repair_reason"] = "dividend_duplicate"
        out.loc[dropped_ix, "repair_detail"] = [
            f"copy of the {out.at[k, 'dividend']:g} dividend of {pd.Timestamp(out.at[k, 'ex_date']).date()}"
            for k in kept
        ]
        out.loc[dropped_ix, "dividend"] = 0.0
        out.loc[dropped_ix, "yield_"] = 0.0
    return out
