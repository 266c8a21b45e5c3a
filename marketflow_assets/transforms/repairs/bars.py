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

from dataclasses import dataclass

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


# `level_suspects_sql`: a jump this large (or larger) makes its ticker a suspect. Half the
# smallest jump a repair can act on without a split (a spike, SPIKE_FACTOR; a unit error needs
# UNIT_FACTOR / e^UNIT_TOLERANCE = 40x): far outside the rounding of two logarithms.
SUSPECT_JUMP = SPIKE_FACTOR / 2


def level_suspects_sql(accepted: str, actions: str) -> str:
    """The tickers whose bars in the relation `accepted` (bronze columns) `repair_bars` might
    rescale or quarantine, given their splits in `actions` (ticker, ex_date, split_ratio).

    The bars of every other ticker come out of `repair_bars` as they went in but for range
    widening, which looks at one bar at a time (`widen_ranges`). A ticker is a suspect when
    - a close-to-close jump reaches SUSPECT_JUMP (a unit error or spike needs 20x or more), or
    - a jump within SPLIT_WINDOW_DAYS (+1) of one of its splits is at least half that split's
      ratio in log terms (a split match needs two thirds of it), or
    - two consecutive bars come from fetches that a split's ex-date may fall between (the
      fetch dates +-2 days, whatever the clocks): their as-of bases may differ, so the jump
      `repair_bars` sees is not the one computed here, or
    - it has a split ratio that is not a positive finite number, or two bars on one session
      (their order, hence their jumps, is not defined).
    Every bound is looser than the rule it stands for, so a ticker left out has nothing for
    those rules to find (test_silver_repair_routing checks it against `repair_bars` itself)."""
    return f"""
WITH splits AS (
    SELECT ticker, ex_date::DATE AS ex_date, split_ratio,
        CASE WHEN split_ratio > 0 AND isfinite(split_ratio) THEN abs(ln(split_ratio)) END AS log_ratio
    FROM {actions} WHERE split_ratio IS DISTINCT FROM 1
),
stepped AS (
    SELECT ticker, session_date, fetched_at,
        ln(close) - lag(ln(close)) OVER w AS log_jump,
        lag(session_date) OVER w AS previous_session,
        lag(fetched_at) OVER w AS previous_fetched_at
    FROM {accepted}
    WINDOW w AS (PARTITION BY ticker ORDER BY session_date)
)
SELECT ticker FROM stepped
WHERE abs(log_jump) >= {float(np.log(SUSPECT_JUMP))!r} OR previous_session = session_date
UNION
SELECT s.ticker FROM stepped s JOIN splits p ON p.ticker = s.ticker
WHERE (abs(date_diff('day', s.session_date, p.ex_date)) <= {SPLIT_WINDOW_DAYS + 1}
        AND abs(s.log_jump) >= p.log_ratio / 2)
    OR (s.previous_fetched_at <> s.fetched_at
        AND p.ex_date BETWEEN least(s.fetched_at, s.previous_fetched_at)::DATE - 2
            AND greatest(s.fetched_at, s.previous_fetched_at)::DATE + 2)
UNION
SELECT ticker FROM splits WHERE log_ratio IS NULL
"""


def _day_numbers(values) -> np.ndarray:
    """Dates (datetime64, Timestamps or date objects) as int64 days since the epoch."""
    return pd.to_datetime(values).to_numpy().astype("datetime64[D]").astype(np.int64)


@dataclass(frozen=True)
class _Tickers:
    """The tickers of bars sorted by ticker: per row its ticker's number (in sorted order) and
    the first and last row of its run, for per-ticker shifts and lookups without grouping."""

    names: pd.Index
    code: np.ndarray
    starts: np.ndarray  # first row of each run
    run: np.ndarray  # per row, its run
    first: np.ndarray
    last: np.ndarray

    @classmethod
    def of(cls, tickers: pd.Series) -> _Tickers:
        code, names = pd.factorize(tickers, sort=True)
        new_run = np.r_[True, code[1:] != code[:-1]] if len(code) else np.zeros(0, bool)
        starts = np.flatnonzero(new_run)
        ends = np.r_[starts[1:], len(code)] - 1
        run = np.cumsum(new_run) - 1
        return cls(pd.Index(names), code, starts, run, starts[run], ends[run])

    def latest(self, positions: np.ndarray) -> np.ndarray:
        """Per row, the maximum of `positions` over its ticker's rows."""
        if not len(positions):
            return positions
        return np.maximum.reduceat(positions, self.starts)[self.run]

    def keys(self, tickers, days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ticker number, day) of other rows as one sortable int64 (-1 numbers: unknown)."""
        code = self.names.get_indexer(pd.Index(tickers)).astype(np.int64)
        return code, code * _DAY_SPAN + days + _DAY_OFFSET

    def previous(self, values: np.ndarray) -> np.ndarray:
        """Each row's previous row of the same ticker (NaN on its first row)."""
        out = np.r_[np.nan, values[:-1]].astype(float) if len(values) else values.astype(float)
        out[self.first == np.arange(len(values))] = np.nan
        return out

    def following(self, values: np.ndarray, fill: float) -> np.ndarray:
        """Each row's next row of the same ticker (`fill` on its last row)."""
        out = np.r_[values[1:], fill].astype(float) if len(values) else values.astype(float)
        out[self.last == np.arange(len(values))] = fill
        return out


# Composite (ticker, day) keys: days since the epoch shifted positive, ticker number above them.
_DAY_OFFSET = 1_000_000
_DAY_SPAN = 4_000_000


def _split_jump(
    rows: _Tickers, days: np.ndarray, splits: pd.DataFrame, log_jump: np.ndarray
) -> np.ndarray:
    """Per bar, the log factor of the nearby split its jump matches (0 if none): the split of
    its ticker nearest to the bar's date within SPLIT_WINDOW_DAYS (the earlier one on a tie)."""
    out = np.zeros(len(days))
    if splits.empty:
        return out
    code, split_keys = rows.keys(splits["ticker"], _day_numbers(splits["ex_date"]))
    order = np.argsort(split_keys, kind="stable")
    split_keys, code = split_keys[order], code[order]
    ratio = splits["split_ratio"].to_numpy(dtype=float)[order]
    bar_keys = rows.code.astype(np.int64) * _DAY_SPAN + days + _DAY_OFFSET
    found = np.full(len(days), -1)
    gap = np.full(len(days), np.iinfo(np.int64).max)
    for side, sign in (("left", 1), ("right", -1)):  # forward, then backward (wins a tie)
        at = np.searchsorted(split_keys, bar_keys, side=side) - (side == "right")
        inside = (at >= 0) & (at < len(split_keys))
        at = np.clip(at, 0, max(len(split_keys) - 1, 0))
        distance = sign * (split_keys[at] - bar_keys)
        usable = inside & (code[at] == rows.code) & (distance <= SPLIT_WINDOW_DAYS)
        better = usable & (distance <= gap)
        found = np.where(better, at, found)
        gap = np.where(better, distance, gap)
    log_ratio = np.where(found >= 0, np.log(ratio[np.maximum(found, 0)]), np.nan)
    tolerance = np.minimum(MAX_TOLERANCE, np.abs(log_ratio) / 3)
    for sign in (1.0, -1.0):  # not applied (prices x ratio) or applied twice (prices / ratio)
        hit = np.abs(log_jump - sign * log_ratio) < tolerance
        out = np.where(hit & (out == 0), sign * log_ratio, out)
    return np.nan_to_num(out)


def _splits_after(rows: _Tickers, days: np.ndarray, splits: pd.DataFrame) -> np.ndarray:
    """Per row, the product of its ticker's split ratios with ex-date after `days`."""
    if splits.empty:
        return np.ones(len(days))
    table = splits[["ticker", "ex_date", "split_ratio"]].copy()
    table["ex_date"] = pd.to_datetime(table["ex_date"]).astype("datetime64[ns]")
    table = table.sort_values(["ticker", "ex_date"], ascending=[True, False])
    table["after"] = table.groupby("ticker")["split_ratio"].cumprod()  # this one and later
    code, keys = rows.keys(table["ticker"], _day_numbers(table["ex_date"]))
    order = np.argsort(keys, kind="stable")
    keys, code, after = keys[order], code[order], table["after"].to_numpy(dtype=float)[order]
    row_keys = rows.code.astype(np.int64) * _DAY_SPAN + days + _DAY_OFFSET
    at = np.searchsorted(keys, row_keys, side="right")  # the first split after the day
    inside = at < len(keys)
    at = np.minimum(at, len(keys) - 1)
    return np.where(inside & (code[at] == rows.code), after[at], 1.0)


def _dividend_explained(
    rows: _Tickers, days: np.ndarray, actions: pd.DataFrame, log_jump: np.ndarray
) -> np.ndarray:
    """Bars on an ex-date whose jump is the dividend's own price drop (a special dividend on
    a consolidation's ex-date, CNE.L: not an unapplied split)."""
    if "dividend_factor" not in actions or actions.empty:
        return np.zeros(len(days), dtype=bool)
    paying = actions[actions["dividend_factor"] < 1]
    if paying.empty:
        return np.zeros(len(days), dtype=bool)
    _, keys = rows.keys(paying["ticker"], _day_numbers(paying["ex_date"]))
    order = np.argsort(keys, kind="stable")
    keys, factor = keys[order], paying["dividend_factor"].to_numpy(dtype=float)[order]
    bar_keys = rows.code.astype(np.int64) * _DAY_SPAN + days + _DAY_OFFSET
    at = np.minimum(np.searchsorted(keys, bar_keys), len(keys) - 1)
    dividend = np.where(keys[at] == bar_keys, factor[at], np.nan)
    return np.abs(log_jump - np.log(dividend)) < MAX_TOLERANCE / 2


def _sorted(bars: pd.DataFrame) -> pd.DataFrame:
    """`bars` by ticker and session (stable), with a fresh 0..n-1 index; no copy when they
    already are in that order."""
    code, _ = pd.factorize(bars["ticker"], sort=True)
    order = np.lexsort((_day_numbers(bars["session_date"]), code))
    if not np.array_equal(order, np.arange(len(bars))):
        bars = bars.take(order)
    return bars.set_axis(pd.RangeIndex(len(bars)), axis=0, copy=False)


def _exchange_dates(rows: _Tickers, tickers: pd.Series, fetched_at: pd.Series) -> np.ndarray:
    """`own_exchange_dates` of (ticker, fetched_at) as days, converted once per distinct pair
    (a run's bars come from a few fetches)."""
    stamps = pd.to_datetime(fetched_at, utc=True)
    fetch, _ = pd.factorize(stamps)
    pair = rows.code.astype(np.int64) * (fetch.max(initial=0) + 2) + fetch
    _, first, inverse = np.unique(pair, return_index=True, return_inverse=True)
    local = own_exchange_dates(
        tickers.iloc[first].reset_index(drop=True), stamps.iloc[first].reset_index(drop=True)
    )
    return _day_numbers(local)[inverse]


def repair_bars(
    bars: pd.DataFrame, actions: pd.DataFrame, switches: RepairSwitches
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(repaired bars with `repair_reason`, repair log, quarantined bars with reason/detail).

    `bars`: accepted daily bars (bronze columns), any tickers and dates; `actions`: ticker,
    ex_date, split_ratio, dividend_factor of the known corporate actions. Vectorized over all
    tickers at once: per-ticker shifts and lookups use the sorted rows' ticker runs."""
    bars = _sorted(bars)
    n = len(bars)
    rows = _Tickers.of(bars["ticker"])
    days = _day_numbers(bars["session_date"]) if n else np.zeros(0, np.int64)
    values = {c: bars[c].to_numpy(dtype=float) for c in PRICE_COLUMNS}
    volume = bars["volume"].to_numpy()

    factors = np.ones(n)
    # Bars of different fetches are in different as-of bases (a fetch before a split serves
    # pre-split prices): compare them all in the latest basis, or a fetch boundary would look
    # like an unapplied split.
    splits = actions[actions["split_ratio"] != 1]
    # the fetch's date on the ticker's own exchange clock (a split is known from its ex-date on)
    fetched = _exchange_dates(rows, bars["ticker"], bars["fetched_at"]) if n else days
    log_close = np.log(values["close"] / _splits_after(rows, fetched, splits))
    log_jump = np.nan_to_num(log_close - rows.previous(log_close))

    unit = np.zeros(n)
    for sign in (1.0, -1.0):
        unit = np.where(
            np.abs(log_jump - sign * np.log(UNIT_FACTOR)) < UNIT_TOLERANCE,
            sign * np.log(UNIT_FACTOR),
            unit,
        )
    split = _split_jump(rows, days, splits, log_jump)
    explained_dividend = _dividend_explained(rows, days, actions, log_jump)
    split = np.where((unit != 0) | explained_dividend, 0.0, split)
    # Detected either way (a switched-off kind is served as the provider sent it, not
    # quarantined as unexplained); applied only when switched on.
    explained = unit + split
    unit = unit if switches.unit_100x else np.zeros(n)
    split = split if switches.split_unapplied else np.zeros(n)
    # Per-ticker levels: running sums of the jumps (grouped by the ticker's number).
    levels = pd.DataFrame({"unit": unit, "split": split}).groupby(rows.code, sort=False).cumsum()
    # Reference: the latest bar that traded, else the latest bar.
    position = np.arange(n)
    traded = np.where(np.nan_to_num(volume.astype(float)) > 0, position, -1)
    latest_traded = rows.latest(traded)
    reference = np.where(latest_traded >= 0, latest_traded, rows.last)
    unit_off = levels["unit"].to_numpy() - levels["unit"].to_numpy()[reference]
    split_off = levels["split"].to_numpy() - levels["split"].to_numpy()[reference]

    kinds = np.zeros(n, dtype=np.int8)  # bit per repair kind, in REASON_ORDER
    for bit, offset, scales_volume in ((1, unit_off, False), (2, split_off, True)):
        hit = np.abs(offset) > 1e-9
        if not hit.any():
            continue
        factor = np.exp(offset)
        for column in PRICE_COLUMNS:
            values[column] = np.where(hit, values[column] / factor, values[column])
        if scales_volume:
            volume = np.where(hit, np.round(volume * factor), volume)
        factors = np.where(hit, factors * factor, factors)
        kinds |= np.where(hit, bit, 0).astype(np.int8)

    # A spike out and straight back that no repair explains: quarantine the bar.
    back = -rows.following(log_jump, 0.0)
    residual = log_jump - explained
    spike = (np.abs(residual) >= np.log(SPIKE_FACTOR)) & (np.abs(back - residual) < np.log(2))
    spike &= np.sign(back) == np.sign(residual)
    return _finished(bars, values, volume, factors, kinds, spike, residual, switches)


def widen_ranges(
    bars: pd.DataFrame, switches: RepairSwitches
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """`repair_bars` of bars whose tickers have no level shift or spike to find (none of their
    jumps reaches `level_suspects_sql`'s bounds): only range widening is left, and it looks at
    each bar on its own, so any subset of such bars can be passed, without its neighbours."""
    bars = _sorted(bars)
    n = len(bars)
    values = {c: bars[c].to_numpy(dtype=float) for c in PRICE_COLUMNS}
    none = np.zeros(n, dtype=bool)
    return _finished(
        bars,
        values,
        bars["volume"].to_numpy(),
        np.ones(n),
        none.astype(np.int8),
        none,
        np.zeros(n),
        switches,
    )


def _finished(
    bars: pd.DataFrame,
    values: dict[str, np.ndarray],
    volume: np.ndarray,
    factors: np.ndarray,
    kinds: np.ndarray,
    spike: np.ndarray,
    residual: np.ndarray,
    switches: RepairSwitches,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Range widening on the rescaled bars, then `repair_bars`' three frames."""
    changed = dict(values)
    if switches.range_widened:
        low = np.fmin(np.fmin(values["low"], values["open"]), values["close"])
        high = np.fmax(np.fmax(values["high"], values["open"]), values["close"])
        widened = (low < values["low"]) | (high > values["high"])
        changed["low"], changed["high"] = low, high
        kinds |= np.where(widened, 4, 0).astype(np.int8)

    reasons = _REASONS[kinds]
    repaired = (kinds != 0) & ~spike
    keep = ~spike
    out_columns = {c: bars[c].array for c in bars.columns}
    out_columns.update({c: changed[c] for c in PRICE_COLUMNS})
    out_columns["volume"] = volume
    out_columns["repair_reason"] = reasons
    after = {c: (v[repaired]) for c, v in out_columns.items()}
    log = _repair_log(bars, repaired, after, factors[repaired])
    quarantined = bars[spike].assign(
        reason="unexplained_price_spike",
        detail=[
            f"close {c:g} is {np.exp(r):.4g}x the previous close and returns; no unit error or "
            "split explains it"
            for c, r in zip(bars["close"][spike], residual[spike], strict=True)
        ],
    )
    repaired_bars = pd.DataFrame({c: v[keep] if spike.any() else v for c, v in out_columns.items()})
    return repaired_bars, log, quarantined.reset_index(drop=True)


# repair_reason per combination of kind bits (1 unit_100x, 2 split_unapplied, 4 range_widened)
_REASON_KINDS = ("unit_100x", "split_unapplied", "range_widened")
_REASONS = np.array(
    [
        ",".join(k for bit, k in enumerate(_REASON_KINDS) if mask >> bit & 1) or None
        for mask in range(8)
    ],
    dtype=object,
)


def _repair_log(
    before: pd.DataFrame, repaired: np.ndarray, after: dict, factors: np.ndarray
) -> pd.DataFrame:
    if not repaired.any():
        return pd.DataFrame(columns=REPAIR_LOG_COLUMNS)
    ohlcv = ("open", "high", "low", "close", "volume")
    old = before.loc[repaired, list(ohlcv)].to_numpy(dtype=float)
    new = np.column_stack([after[c].astype(float) for c in ohlcv])
    moved = ~np.isclose(old, new, rtol=1e-12)
    detail = [
        ", ".join(
            f"{c} {b:g} -> {a:g}" for c, b, a, m in zip(ohlcv, brow, arow, mrow, strict=True) if m
        )
        for brow, arow, mrow in zip(old, new, moved, strict=True)
    ]
    log = pd.DataFrame(
        {
            "ticker": after["ticker"],
            "session_date": after["session_date"],
            "kind": after["repair_reason"],
            "factor": factors,
            "detail": detail,
            **{f"original_{c}": before.loc[repaired, c].to_numpy() for c in ohlcv},
            **{c: after[c] for c in ohlcv},
            "source": after["source"],
            "fetch_id": after["fetch_id"],
            "raw_object": after["raw_object"],
        }
    )
    return log[REPAIR_LOG_COLUMNS]
