"""Bar repairs on a ticker's daily history in the provider's as-of basis (where errors show).

Level shifts. Between consecutive bars, a close ratio of ~100 or ~1/100 is a unit error (no
market moves 100x overnight); a ratio matching a split of the ticker (or its inverse) within
`SPLIT_WINDOW_DAYS` of that split's ex-date is a split not applied to part of the history (or
applied twice). Summing those jumps gives each bar's level; the reference level is that of the
latest bar that traded (volume > 0: a bar without volume is a carried quote, not a print; the
latest bar if none traded). Bars off the reference level are rescaled to it: prices by the level,
and for splits volume by its inverse (a unit error does not change the share count).

A jump of 20x or more out of a bar and straight back that neither explains is quarantined
(`unexplained_price_spike`): there is no telling which number is right.

Range widening. Open or close within `RANGE_TOLERANCE` outside [low, high] (auction prints,
bar_quality accepts them only when the repair is on): low/high are widened to include them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from marketflow_assets.exchanges import own_exchange_dates
from marketflow_assets.transforms.repairs import RepairSwitches

# Relative distance outside [low, high] still read as an auction print: the opening and closing
# auctions of illiquid London lines print up to ~20% away from the continuous-trading range
# (CLC.L, LSC.L in the yfinance fixtures); farther is quarantined.
RANGE_TOLERANCE = 0.25
SPLIT_WINDOW_DAYS = 45  # a split-sized jump this close to the split's ex-date is that split
UNIT_FACTOR = 100.0
# A jump matches a factor f when |log(jump / f)| < min(|log f| / 3, MAX_TOLERANCE): a split of
# 0.76 needs a jump within 9% of it, a 100x error or a 1:10 split leaves room for the day's own
# move on top (illiquid lines move 2x between ticks: ALPHA.PA at 1-3 EUR, SPM.MI -48% on the day).
MAX_TOLERANCE = float(np.log(2.5))
UNIT_TOLERANCE = MAX_TOLERANCE
SPIKE_FACTOR = 20.0
PRICE_COLUMNS = ("open", "high", "low", "close", "adj_close")
REPAIR_LOG_COLUMNS = [
    "ticker",
    "session_date",
    "kind",
    "factor",
    "detail",
    "original_open",
    "original_high",
    "original_low",
    "original_close",
    "original_volume",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "source",
    "fetch_id",
    "raw_object",
]


def _split_jump(bars: pd.DataFrame, splits: pd.DataFrame, log_jump: np.ndarray) -> np.ndarray:
    """Per bar, the log factor of the nearby split its jump matches (0 if none)."""
    out = np.zeros(len(bars))
    if splits.empty:
        return out
    keyed = bars[["ticker", "session_date"]].assign(_row=np.arange(len(bars)))
    keyed["session_date"] = pd.to_datetime(keyed["session_date"]).astype("datetime64[ns]")
    table = splits[["ticker", "ex_date", "split_ratio"]].copy()
    table["ex_date"] = pd.to_datetime(table["ex_date"]).astype("datetime64[ns]")
    near = pd.merge_asof(
        keyed.sort_values("session_date"),
        table.sort_values("ex_date"),
        left_on="session_date",
        right_on="ex_date",
        by="ticker",
        direction="nearest",
        tolerance=pd.Timedelta(days=SPLIT_WINDOW_DAYS),
    ).sort_values("_row")
    log_ratio = np.log(near["split_ratio"].to_numpy(dtype=float))
    tolerance = np.minimum(MAX_TOLERANCE, np.abs(log_ratio) / 3)
    for sign in (1.0, -1.0):  # not applied (prices x ratio) or applied twice (prices / ratio)
        hit = np.abs(log_jump - sign * log_ratio) < tolerance
        out = np.where(hit & (out == 0), sign * log_ratio, out)
    return np.nan_to_num(out)


def _splits_after(tickers: pd.Series, days: pd.Series, splits: pd.DataFrame) -> np.ndarray:
    """Per row, the product of the ticker's split ratios with ex-date after `days`."""
    if splits.empty:
        return np.ones(len(tickers))
    table = splits[["ticker", "ex_date", "split_ratio"]].copy()
    table["ex_date"] = pd.to_datetime(table["ex_date"]).astype("datetime64[ns]")
    table = table.sort_values(["ticker", "ex_date"], ascending=[True, False])
    table["after"] = table.groupby("ticker")["split_ratio"].cumprod()  # this one and later
    keyed = pd.DataFrame(
        {
            "ticker": tickers.to_numpy(),
            "day": days.to_numpy().astype("datetime64[ns]"),
            "_row": range(len(tickers)),
        }
    )
    found = pd.merge_asof(
        keyed.sort_values("day"),
        table.sort_values("ex_date"),
        left_on="day",
        right_on="ex_date",
        by="ticker",
        direction="forward",
        allow_exact_matches=False,
    ).sort_values("_row")
    return found["after"].fillna(1.0).to_numpy(dtype=float)


def _dividend_explained(
    bars: pd.DataFrame, actions: pd.DataFrame, log_jump: np.ndarray
) -> np.ndarray:
    """Bars on an ex-date whose jump is the dividend's own price drop (a special dividend on
    a consolidation's ex-date, CNE.L: not an unapplied split)."""
    if "dividend_factor" not in actions or actions.empty:
        return np.zeros(len(bars), dtype=bool)
    paying = actions[actions["dividend_factor"] < 1]
    keyed = bars[["ticker", "session_date"]].assign(
        session_date=pd.to_datetime(bars["session_date"]).astype("datetime64[ns]")
    )
    factor = keyed.merge(
        paying.assign(session_date=pd.to_datetime(paying["ex_date"]).astype("datetime64[ns]"))[
            ["ticker", "session_date", "dividend_factor"]
        ],
        on=["ticker", "session_date"],
        how="left",
    )["dividend_factor"].to_numpy(dtype=float)
    return np.abs(log_jump - np.log(factor)) < MAX_TOLERANCE / 2


def repair_bars(
    bars: pd.DataFrame, actions: pd.DataFrame, switches: RepairSwitches
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(repaired bars with `repair_reason`, repair log, quarantined bars with reason/detail).

    `bars`: accepted daily bars (bronze columns), any tickers and dates; `actions`: ticker,
    ex_date, split_ratio, dividend_factor of the known corporate actions."""
    bars = bars.sort_values(["ticker", "session_date"], kind="stable").reset_index(drop=True)
    original = bars.copy()
    reasons = pd.Series("", index=bars.index, dtype=object)

    def add_reason(hit: np.ndarray, kind: str) -> pd.Series:
        return reasons.where(~hit, (reasons + "," + kind).str.lstrip(","))

    factors = np.ones(len(bars))
    # Bars of different fetches are in different as-of bases (a fetch before a split serves
    # pre-split prices): compare them all in the latest basis, or a fetch boundary would look
    # like an unapplied split.
    splits = actions[actions["split_ratio"] != 1]
    # the fetch's date on the ticker's own exchange clock (a split is known from its ex-date on)
    fetched = own_exchange_dates(bars["ticker"], pd.to_datetime(bars["fetched_at"], utc=True))
    latest = bars["close"].to_numpy(dtype=float) / _splits_after(bars["ticker"], fetched, splits)
    log_close = pd.Series(np.log(latest), index=bars.index)
    log_jump = np.nan_to_num((log_close - log_close.groupby(bars["ticker"]).shift(1)).to_numpy())

    unit = np.zeros(len(bars))
    for sign in (1.0, -1.0):
        unit = np.where(
            np.abs(log_jump - sign * np.log(UNIT_FACTOR)) < UNIT_TOLERANCE,
            sign * np.log(UNIT_FACTOR),
            unit,
        )
    split = _split_jump(bars, splits, log_jump)
    split = np.where((unit != 0) | _dividend_explained(bars, actions, log_jump), 0.0, split)
    # Detected either way (a switched-off kind is served as the provider sent it, not
    # quarantined as unexplained); applied only when switched on.
    explained = unit + split
    unit = unit if switches.unit_100x else np.zeros(len(bars))
    split = split if switches.split_unapplied else np.zeros(len(bars))
    levels = pd.DataFrame(
        {"ticker": bars["ticker"], "unit": unit, "split": split, "traded": bars["volume"] > 0}
    )
    levels[["unit", "split"]] = levels.groupby("ticker", sort=False)[["unit", "split"]].cumsum()
    # Reference: the latest bar that traded, else the latest bar.
    position = pd.Series(np.arange(len(bars)), index=bars.index)
    last_traded = position.where(levels["traded"]).groupby(bars["ticker"]).transform("max")
    reference = last_traded.fillna(position.groupby(bars["ticker"]).transform("max")).astype(int)
    unit_off = levels["unit"].to_numpy() - levels["unit"].to_numpy()[reference]
    split_off = levels["split"].to_numpy() - levels["split"].to_numpy()[reference]

    for kind, offset, scales_volume in (
        ("unit_100x", unit_off, False),
        ("split_unapplied", split_off, True),
    ):
        hit = np.abs(offset) > 1e-9
        if not hit.any():
            continue
        factor = np.exp(offset)
        for column in PRICE_COLUMNS:
            bars[column] = np.where(hit, bars[column] / factor, bars[column])
        if scales_volume:
            bars["volume"] = np.where(hit, np.round(bars["volume"] * factor), bars["volume"])
        factors = np.where(hit, factors * factor, factors)
        reasons = add_reason(hit, kind)

    # A spike out and straight back that no repair explains: quarantine the bar.
    back = -pd.Series(log_jump).groupby(bars["ticker"]).shift(-1).fillna(0).to_numpy()
    residual = log_jump - explained
    spike = (np.abs(residual) >= np.log(SPIKE_FACTOR)) & (np.abs(back - residual) < np.log(2))
    spike &= np.sign(back) == np.sign(residual)

    if switches.range_widened:
        low = bars[["low", "open", "close"]].min(axis=1)
        high = bars[["high", "open", "close"]].max(axis=1)
        widened = ((low < bars["low"]) | (high > bars["high"])).to_numpy()
        bars["low"], bars["high"] = low, high
        reasons = add_reason(widened, "range_widened")

    repaired = reasons.ne("").to_numpy() & ~spike
    bars["repair_reason"] = reasons.where(reasons.ne(""), None)
    log = _repair_log(original[repaired], bars[repaired], factors[repaired])
    quarantined = original[spike].assign(
        reason="unexplained_price_spike",
        detail=[
            f"close {c:g} is {np.exp(r):.4g}x the previous close and returns; no unit error or "
            "split explains it"
            for c, r in zip(original["close"][spike], residual[spike], strict=True)
        ],
    )
    return bars[~spike].reset_index(drop=True), log, quarantined.reset_index(drop=True)


def _repair_log(before: pd.DataFrame, after: pd.DataFrame, factors: np.ndarray) -> pd.DataFrame:
    if before.empty:
        return pd.DataFrame(columns=REPAIR_LOG_COLUMNS)
    detail = [
        ", ".join(
            f"{c} {b:g} -> {a:g}"
            for c, b, a in zip(("open", "high", "low", "close", "volume"), brow, arow, strict=True)
            if not np.isclose(b, a, rtol=1e-12)
        )
        for brow, arow in zip(
            before[["open", "high", "low", "close", "volume"]].to_numpy(),
            after[["open", "high", "low", "close", "volume"]].to_numpy(),
            strict=True,
        )
    ]
    log = pd.DataFrame(
        {
            "ticker": after["ticker"].to_numpy(),
            "session_date": after["session_date"].to_numpy(),
            "kind": after["repair_reason"].to_numpy(),
            "factor": factors,
            "detail": detail,
            **{f"original_{c}": before[c].to_numpy() for c in ("open", "high", "low", "close")},
            "original_volume": before["volume"].to_numpy(),
            **{c: after[c].to_numpy() for c in ("open", "high", "low", "close", "volume")},
            "source": after["source"].to_numpy(),
            "fetch_id": after["fetch_id"].to_numpy(),
            "raw_object": after["raw_object"].to_numpy(),
        }
    )
    return log[REPAIR_LOG_COLUMNS]
