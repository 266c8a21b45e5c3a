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

    scale = np.ones(len(out))
    if switches.dividend_unit:
        too_large = is_div & ((y > 1) | ((y > TOO_LARGE_YIELD) & (drop < y / 10)))
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
