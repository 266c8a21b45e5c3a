"""Simulated financial statements, consistent with the simulator's prices, sectors and actions.

Every number is a pure function of (seed, ticker, fiscal quarter) and the provider clock, like
the simulator's bars. Per ticker: shares outstanding (times its splits), a price-to-sales level
and margins typical of its sector, a fiscal year end, report lags. Quarterly revenue follows the
company's market value over the quarter (so P/S stays near the sector's level), costs, profits,
cash flows and the balance sheet follow from revenue, dividends paid are the simulator's
dividends times the shares, and assets = liabilities + equity exactly.

Yahoo's semantics: a fetch at F serves the statements announced by F only, the last 5 quarters
and 4 fiscal years, indexed by period end, with no filing date; earnings-release dates come
separately (`earnings_dates`). Some tickers, like many US filers, have no fiscal-Q4 income and
cash-flow quarter (only the annual figure). With the `restatements` fault, a quarter's income
numbers change by 2-10% some 30-150 days after its release: fetches before that serve the
original, later ones the restated value (and annual figures summing it).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from marketflow_assets.calendar import EXCHANGE_TZ
from marketflow_assets.sources.base import Payload, RateLimitError
from marketflow_assets.sources.fundamentals import (
    LINE_ITEMS,
    YAHOO_FORMAT,
    FundamentalsSource,
    statements_payload,
)
from marketflow_assets.sources.simulator import SimulatorSource, _rng, _stable_int

QUARTERS_SERVED = 5
RELEASE_TIME = dt.time(16, 30)  # earnings are released after the close, New York time
YEARS_SERVED = 4
# Price-to-sales, gross / operating / net margin, assets per unit of annual revenue.
SECTOR_PROFILE = {
    "Technology": (6.0, 0.55, 0.28, 0.22, 1.2),
    "Communication Services": (4.0, 0.50, 0.22, 0.16, 1.5),
    "Consumer Cyclical": (1.5, 0.35, 0.10, 0.07, 0.9),
    "Financial Services": (3.0, 0.60, 0.30, 0.22, 8.0),
    "Healthcare": (4.0, 0.65, 0.20, 0.14, 1.4),
    "Consumer Defensive": (1.5, 0.35, 0.12, 0.08, 0.8),
    "Energy": (1.2, 0.30, 0.14, 0.09, 1.3),
    "Industrials": (2.0, 0.30, 0.13, 0.09, 1.1),
    "Utilities": (2.5, 0.40, 0.20, 0.11, 3.5),
    "Basic Materials": (1.5, 0.28, 0.12, 0.08, 1.2),
    "Real Estate": (6.0, 0.60, 0.35, 0.20, 6.0),
}
INCOME_ITEMS = (
    "TotalRevenue",
    "CostOfRevenue",
    "GrossProfit",
    "OperatingIncome",
    "NetIncome",
    "EBITDA",
    "ReconciledDepreciation",
    "DilutedAverageShares",
)
RESTATED_ITEMS = ("TotalRevenue", "CostOfRevenue", "GrossProfit", "OperatingIncome", "NetIncome")
CASHFLOW_ITEMS = LINE_ITEMS["cashflow"]
BALANCE_ITEMS = LINE_ITEMS["balance"]


class SimulatorFundamentals(FundamentalsSource):
    """Statements for the simulator's tickers, served with Yahoo's semantics."""

    name = "simulator"

    def __init__(self, simulator: SimulatorSource) -> None:
        self.sim = simulator

    def now(self) -> dt.datetime:
        return self.sim.now()

    def fetch_statements(self, tickers: tuple[str, ...]) -> Payload:
        sim = self.sim
        sim._requests += 1
        if (
            sim.faults.rate_limit
            and _rng(sim.seed, "rate-limit", sim._requests).random() < sim.faults.rate_limit
        ):
            raise RateLimitError("429 Too Many Requests (statements); simulated rate limit")
        now = self.now()
        records, errors = {}, {}
        for ticker in tickers:  # one document per ticker, vectorised within
            listing = sim.listing(ticker)
            if ticker in sim.faults.unknown:
                errors[ticker] = "No fundamentals data found for symbol, may be delisted"
            elif listing.quote_type != "EQUITY" or listing.sector is None:
                errors[ticker] = f"no financial statements: {ticker} is a {listing.quote_type}"
            else:
                record = self.statements(ticker, now)
                if record is None:
                    errors[ticker] = f"no statements announced by {now:%Y-%m-%d}"
                else:
                    records[ticker] = record
        return statements_payload(
            self.name,
            {"tickers": list(tickers), "provider": "simulator", "seed": sim.seed},
            now,
            records,
            errors,
            1,
        )

    # -- ground truth ----------------------------------------------------------------------
    def quarters(self, ticker: str, until: dt.date) -> pd.DataFrame:
        """Every fiscal quarter ending by `until`: period end, fiscal-Q4 flag, release date,
        restatement date (NaT if never) and factor, and the original values of every item."""
        q = self._quarters(ticker, until)
        if q is None:
            return pd.DataFrame()
        frame = pd.DataFrame(
            {
                "period_end": pd.DatetimeIndex(q.period_end).date,
                "fiscal_q4": q.fiscal_q4,
                **q.items,
                "announced": q.announced.astype("datetime64[ns]"),
                "restated_on": q.restated_on.astype("datetime64[ns]"),
                "restate_factor": q.restate_factor,
            }
        )
        frame["omit_q4"] = q.omit_q4
        return frame

    def _quarters(self, ticker: str, until: dt.date) -> _Quarters | None:
        """`quarters` as numpy arrays: a few hundred microseconds a ticker, where pandas' per-call
        overhead on these 100-row tables was most of a 500-ticker fetch."""
        sim = self.sim
        listing = sim.listing(ticker)
        hist = sim.closes(ticker, until)  # the other bars are not needed
        if len(hist) < 2:
            return None
        h = _stable_int(sim.seed, ticker, "fundamentals")
        params = _rng(sim.seed, ticker, "fundamentals")
        ps, gross, operating, net, asset_turn = SECTOR_PROFILE.get(
            listing.sector, SECTOR_PROFILE["Industrials"]
        )
        ps *= params.lognormal(0, 0.25)
        shares0 = params.uniform(3e8, 6e9) / 10  # original-basis shares, before any split
        fy_end_month = (12, 12, 9, 6)[h % 4]
        lag_q, lag_a = int(params.integers(22, 40)), int(params.integers(35, 60))
        equity_ratio = params.uniform(0.25, 0.6) if listing.sector != "Financial Services" else 0.1

        sessions = hist.sessions.astype("datetime64[D]")
        ends = _quarter_ends(sessions[0], np.datetime64(until, "D"))
        ends = ends[ends > sessions[0] + np.timedelta64(10, "D")]
        if ends.size == 0:
            return None
        # Sessions of each quarter: [previous end, end].
        bounds = np.searchsorted(sessions, ends, side="right")
        starts = np.concatenate([[0], bounds[:-1]])
        keep = bounds > starts
        ends, starts, bounds = ends[keep], starts[keep], bounds[keep]
        split_factor = np.cumprod(hist.split)  # shares per original share, on each session
        value = hist.close * split_factor  # market value per original share
        # Sums over each quarter's own sessions: the last quarter ends at bounds[-1], not at the
        # last session of the history (else its values would grow with every fetch until the next
        # quarter end, served as a new version each time).
        in_quarters = slice(0, bounds[-1])
        avg_value = np.add.reduceat(value[in_quarters], starts) / (bounds - starts)
        shares = shares0 * split_factor[bounds - 1]
        dividends_paid = np.add.reduceat(
            (hist.dividend * shares0 * split_factor)[in_quarters], starts
        )
        n = len(ends)
        q = _rng(sim.seed, ticker, "fundamentals-quarters").standard_normal((n, 4))

        revenue = np.round(avg_value * shares0 / ps / 4 * np.exp(0.03 * q[:, 0]), -3)
        gross_profit = np.round(revenue * gross, -3)
        operating = np.round(revenue * operating * (1 + 0.15 * q[:, 1]), -3)
        depreciation = np.round(revenue * 0.05, -3)
        net_income = np.round(revenue * net * (1 + 0.2 * q[:, 1]), -3)
        ocf = np.round(net_income + depreciation + revenue * 0.03 * q[:, 2], -3)
        capex = -np.round(revenue * 0.06, -3)
        assets = np.round(revenue * 4 * asset_turn * np.exp(0.02 * q[:, 3]), -3)
        equity = np.round(assets * equity_ratio, -3)
        current_assets = np.round(assets * 0.35, -3)
        items = {
            "TotalRevenue": revenue,
            "CostOfRevenue": revenue - gross_profit,
            "GrossProfit": gross_profit,
            "OperatingIncome": operating,
            "NetIncome": net_income,
            "EBITDA": operating + depreciation,
            "ReconciledDepreciation": depreciation,
            "DilutedAverageShares": np.round(shares),
            "OperatingCashFlow": ocf,
            "CapitalExpenditure": capex,
            "FreeCashFlow": ocf + capex,
            "CashDividendsPaid": -np.round(dividends_paid, -3),
            "TotalAssets": assets,
            "TotalLiabilitiesNetMinorityInterest": assets - equity,
            "StockholdersEquity": equity,
            "TotalEquityGrossMinorityInterest": equity,
            "CurrentAssets": current_assets,
            "CurrentLiabilities": np.round(current_assets / params.uniform(1.0, 2.5), -3),
            "CashAndCashEquivalents": np.round(current_assets * 0.3, -3),
            "TotalDebt": np.round((assets - equity) * 0.4, -3),
            "OrdinarySharesNumber": np.round(shares),
        }
        fiscal_q4 = (ends.astype("datetime64[M]").astype(np.int64) % 12 + 1) == fy_end_month
        jitter = _rng(sim.seed, ticker, "fundamentals-lags").integers(0, 8, n)
        lag = np.where(fiscal_q4, lag_a, lag_q) + jitter
        announced = ends + lag.astype("timedelta64[D]")
        restate = _rng(sim.seed, ticker, "fundamentals-restate").random((n, 3))
        hit = restate[:, 0] < sim.faults.restatements
        restated_on = np.where(
            hit,
            announced + (30 + (restate[:, 1] * 120).astype(int)).astype("timedelta64[D]"),
            np.datetime64("NaT", "D"),
        )
        sign = np.where(restate[:, 2] < 0.5, -1.0, 1.0)
        restate_factor = np.where(hit, 1 + sign * (0.02 + 0.08 * restate[:, 2]), 1.0)
        return _Quarters(ends, fiscal_q4, items, announced, restated_on, restate_factor, h % 3 == 0)

    def statements(self, ticker: str, now: dt.datetime) -> dict | None:
        """What Yahoo serves for `ticker` at `now` (YAHOO_FORMAT)."""
        today = np.datetime64(now.astimezone(EXCHANGE_TZ).date(), "D")
        quarters = self._quarters(ticker, today.astype(dt.date))
        if quarters is None:
            return None
        known = quarters.announced <= today
        if not known.any():
            return None
        # restated_on <= today is False where NaT: those quarters keep their original values.
        factor = np.where(quarters.restated_on[known] <= today, quarters.restate_factor[known], 1.0)
        values = {item: column[known] for item, column in quarters.items.items()}
        for item in RESTATED_ITEMS:
            values[item] = np.round(values[item] * factor, -3)
        values["GrossProfit"] = values["TotalRevenue"] - values["CostOfRevenue"]
        values["EBITDA"] = values["OperatingIncome"] + values["ReconciledDepreciation"]
        ends = quarters.period_end[known]
        fiscal_q4 = quarters.fiscal_q4[known]

        # Fiscal years: the four quarters up to a fiscal Q4, flows summed, balance at its end.
        fy = np.cumsum(fiscal_q4[::-1])[::-1]
        year_sizes = np.bincount(fy)
        q4_rows = np.flatnonzero(fiscal_q4 & (year_sizes[fy] == 4))[-YEARS_SERVED:]
        # The four quarters of each kept year, oldest first: a (years, 4) index.
        year_rows = q4_rows[:, None] + np.arange(-3, 1)
        annual = {}
        for item in (*INCOME_ITEMS, *CASHFLOW_ITEMS):
            quarter_values = values[item][year_rows]
            # Summed from +0.0 as pandas' groupby sum does (four -0.0 dividends give 0.0).
            annual[item] = 0.0 + quarter_values.sum(axis=1)
        annual["DilutedAverageShares"] = np.round(
            values["DilutedAverageShares"][year_rows].sum(axis=1) / 4
        )
        for item in BALANCE_ITEMS:
            annual[item] = values[item][q4_rows]
        annual_ends = ends[q4_rows]

        recent = slice(max(len(ends) - QUARTERS_SERVED, 0), None)
        flows = np.arange(len(ends))[recent]
        flows = flows[~(fiscal_q4[flows] & quarters.omit_q4)]
        return {
            "format": YAHOO_FORMAT,
            "currency": "USD",
            "income": {
                "annual": _by_period(annual_ends, annual, INCOME_ITEMS),
                "quarterly": _by_period(ends[flows], values, INCOME_ITEMS, flows),
            },
            "balance": {
                "annual": _by_period(annual_ends, annual, BALANCE_ITEMS),
                "quarterly": _by_period(ends[recent], values, BALANCE_ITEMS, recent),
            },
            "cashflow": {
                "annual": _by_period(annual_ends, annual, CASHFLOW_ITEMS),
                "quarterly": _by_period(ends[flows], values, CASHFLOW_ITEMS, flows),
            },
            "earnings_dates": _earnings_dates(quarters.announced, today),
        }


@dataclass(frozen=True)
class _Quarters:
    """Every fiscal quarter of a ticker ending by a day, as arrays (one element a quarter)."""

    period_end: np.ndarray  # datetime64[D]
    fiscal_q4: np.ndarray  # bool
    items: dict[str, np.ndarray]  # line item -> original values, in the statements' order
    announced: np.ndarray  # datetime64[D], the earnings release
    restated_on: np.ndarray  # datetime64[D], NaT if never restated
    restate_factor: np.ndarray  # 1.0 if never restated
    omit_q4: bool  # no fiscal-Q4 income and cash-flow quarter (annual figures only)


def _quarter_ends(first: np.datetime64, last: np.datetime64) -> np.ndarray:
    """Calendar quarter ends (Mar 31, Jun 30, Sep 30, Dec 31) in [first, last], datetime64[D]."""
    months = np.arange(first.astype("datetime64[M]"), last.astype("datetime64[M]") + 1)
    months = months[months.astype(np.int64) % 3 == 2]
    ends = (months + 1).astype("datetime64[D]") - np.timedelta64(1, "D")
    return ends[(ends >= first) & (ends <= last)]


def _by_period(
    ends: np.ndarray,
    values: dict[str, np.ndarray],
    items: tuple[str, ...],
    rows: np.ndarray | slice = slice(None),
) -> dict:
    """{period_end: {item: value}}, as yfinance's statement table `to_dict()` (columns = ends)."""
    columns = [values[item][rows].tolist() for item in items]
    return {
        str(end): dict(zip(items, row, strict=True))
        for end, row in zip(ends.tolist(), zip(*columns, strict=True), strict=True)
    }


def _earnings_dates(announced: np.ndarray, today: np.datetime64) -> list[str]:
    """Yahoo's earnings calendar: the last 12 releases and the next one, 16:30 New York (after
    the close), newest first."""
    listed = np.concatenate([announced[announced <= today][-12:], announced[announced > today][:1]])
    return [
        dt.datetime.combine(day, RELEASE_TIME, EXCHANGE_TZ).isoformat()
        for day in sorted(listed.tolist(), reverse=True)
    ]
