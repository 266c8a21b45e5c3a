"""The simulator's statements, computed with numpy arrays per ticker, equal the pandas
implementation they replaced (kept below as the reference, verbatim but for names and the fix of
the last quarter's sums), value for value and key for key, on several seeds, clocks and
restatement rates; and a quarter once released is served the same on every later fetch."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from marketflow_assets.calendar import EXCHANGE_TZ
from marketflow_assets.sources.fundamentals import YAHOO_FORMAT
from marketflow_assets.sources.simulator import SimulatorFaults, SimulatorSource, _rng, _stable_int
from marketflow_assets.sources.simulator_fundamentals import (
    BALANCE_ITEMS,
    CASHFLOW_ITEMS,
    INCOME_ITEMS,
    QUARTERS_SERVED,
    RESTATED_ITEMS,
    SECTOR_PROFILE,
    YEARS_SERVED,
    SimulatorFundamentals,
)

# Simulator listings of every kind (equities with and without splits and dividends, ETFs, an
# index, foreign listings) plus generic tickers (a fiscal year ending in Dec, Sep or Jun).
TICKERS = (
    "AAPL",
    "KO",
    "MSFT",
    "JPM",
    "XOM",
    "SPY",
    "^GSPC",
    "VOD.L",
    "NPN.JO",
    "ZZZA",
    "ZZZB",
    "QQQX",
)
CASES = [
    (0, dt.datetime(2024, 6, 7, 22, 0, tzinfo=dt.UTC), ""),
    (0, dt.datetime(2024, 6, 7, 22, 0, tzinfo=dt.UTC), "restatements=0.5"),
    (3, dt.datetime(2011, 2, 14, 15, 0, tzinfo=dt.UTC), "restatements=0.3"),
    (0, dt.datetime(2000, 2, 1, 15, 0, tzinfo=dt.UTC), ""),  # before any release
    (1, dt.datetime(2001, 5, 3, 15, 0, tzinfo=dt.UTC), ""),  # the first fiscal years
]


@pytest.mark.parametrize(("seed", "clock", "faults"), CASES)
def test_statements_equal_the_pandas_reference(seed, clock, faults):
    sim = SimulatorSource(seed=seed, clock=clock, faults=SimulatorFaults.parse(faults))
    source = SimulatorFundamentals(sim)
    served = 0
    for ticker in TICKERS:
        if sim.listing(ticker).sector is None:
            continue  # ETFs and indexes have no statements (fetch_statements says so)
        expected = reference_statements(source, ticker, clock)
        got = source.statements(ticker, clock)
        # JSON text: the landed payload's bytes (key order, -0.0 and float formatting included).
        assert json.dumps(got) == json.dumps(expected), ticker
        served += got is not None
        truth = source.quarters(ticker, clock.date())
        reference = reference_quarters(source, ticker, clock.date())
        pd.testing.assert_frame_equal(truth, reference, check_dtype=False)
    assert served > 0 or clock.year == 2000


# -- the reference: the pandas implementation before it was rewritten on numpy arrays --------
def reference_quarters(self, ticker: str, until: dt.date) -> pd.DataFrame:
    """Every fiscal quarter ending by `until`: period end, fiscal-Q4 flag, release date,
    restatement date (NaT if never) and factor, and the original values of every item."""
    sim = self.sim
    listing = sim.listing(ticker)
    hist = sim.history(ticker, until)
    if len(hist) < 2:
        return pd.DataFrame()
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

    sessions = pd.DatetimeIndex(hist.sessions)
    ends = pd.date_range(sessions[0], pd.Timestamp(until), freq="QE")
    ends = ends[ends > sessions[0] + pd.Timedelta(days=10)]
    if ends.empty:
        return pd.DataFrame()
    # Sessions of each quarter: [previous end, end].
    bounds = np.searchsorted(sessions.values, ends.values, side="right")
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
    dividends_paid = np.add.reduceat((hist.dividend * shares0 * split_factor)[in_quarters], starts)
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
    frame = pd.DataFrame(
        {
            "period_end": ends.date,
            "fiscal_q4": ends.month == fy_end_month,
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
    )
    jitter = _rng(sim.seed, ticker, "fundamentals-lags").integers(0, 8, n)
    lag = np.where(frame["fiscal_q4"], lag_a, lag_q) + jitter
    frame["announced"] = pd.to_datetime(frame["period_end"]) + pd.to_timedelta(lag, "D")
    restate = _rng(sim.seed, ticker, "fundamentals-restate").random((n, 3))
    hit = restate[:, 0] < sim.faults.restatements
    frame["restated_on"] = (
        frame["announced"] + pd.to_timedelta(30 + (restate[:, 1] * 120).astype(int), "D")
    ).where(hit)
    sign = np.where(restate[:, 2] < 0.5, -1.0, 1.0)
    frame["restate_factor"] = np.where(hit, 1 + sign * (0.02 + 0.08 * restate[:, 2]), 1.0)
    frame["omit_q4"] = h % 3 == 0
    return frame


def reference_statements(self, ticker: str, now: dt.datetime) -> dict | None:
    """What Yahoo serves for `ticker` at `now` (YAHOO_FORMAT)."""
    today = pd.Timestamp(now.astimezone(EXCHANGE_TZ).date())
    quarters = reference_quarters(self, ticker, today.date())
    if quarters.empty:
        return None
    known = quarters[quarters["announced"] <= today].copy()
    if known.empty:
        return None
    restated = known["restated_on"].notna() & (known["restated_on"] <= today)
    factor = np.where(restated, known["restate_factor"], 1.0)
    for item in RESTATED_ITEMS:
        known[item] = np.round(known[item] * factor, -3)
    known["GrossProfit"] = known["TotalRevenue"] - known["CostOfRevenue"]
    known["EBITDA"] = known["OperatingIncome"] + known["ReconciledDepreciation"]

    # Fiscal years: the four quarters up to a fiscal Q4, flows summed, balance at its end.
    known["fy"] = known["fiscal_q4"][::-1].cumsum()[::-1]
    years = known[(known["fy"] > 0) & (known.groupby("fy")["fy"].transform("size") == 4)]
    flows = [*INCOME_ITEMS, *CASHFLOW_ITEMS]
    annual = years.groupby("fy")[flows].sum()
    annual["DilutedAverageShares"] = years.groupby("fy")["DilutedAverageShares"].mean().round()
    annual = annual.join(years[years["fiscal_q4"]].set_index("fy")[["period_end", *BALANCE_ITEMS]])
    annual = annual.sort_values("period_end").tail(YEARS_SERVED)

    recent = known.tail(QUARTERS_SERVED)
    flow_quarters = recent[~(recent["fiscal_q4"] & recent["omit_q4"])]
    return {
        "format": YAHOO_FORMAT,
        "currency": "USD",
        "income": {
            "annual": _reference_by_period(annual, INCOME_ITEMS),
            "quarterly": _reference_by_period(flow_quarters, INCOME_ITEMS),
        },
        "balance": {
            "annual": _reference_by_period(annual, BALANCE_ITEMS),
            "quarterly": _reference_by_period(recent, BALANCE_ITEMS),
        },
        "cashflow": {
            "annual": _reference_by_period(annual, CASHFLOW_ITEMS),
            "quarterly": _reference_by_period(flow_quarters, CASHFLOW_ITEMS),
        },
        "earnings_dates": _reference_earnings_dates(quarters, today),
    }


def _reference_by_period(frame: pd.DataFrame, items: tuple[str, ...]) -> dict:
    """{period_end: {item: value}}, as yfinance's statement table `to_dict()` (columns = ends)."""
    table = frame.set_index(pd.to_datetime(frame["period_end"]).dt.strftime("%Y-%m-%d"))
    return {
        end: {k: float(v) for k, v in row.items()} for end, row in table[list(items)].iterrows()
    }


def _reference_earnings_dates(quarters: pd.DataFrame, today: pd.Timestamp) -> list[str]:
    """Yahoo's earnings calendar: the last 12 releases and the next one, 16:30 New York (after
    the close), newest first."""
    dates = quarters["announced"]
    listed = pd.concat([dates[dates <= today].tail(12), dates[dates > today].head(1)])
    stamps = (listed + pd.Timedelta(hours=16, minutes=30)).dt.tz_localize(EXCHANGE_TZ)
    return [ts.isoformat() for ts in stamps.sort_values(ascending=False)]


def test_a_released_quarter_is_served_the_same_on_every_later_fetch():
    """Without restatements a quarter's figures are final once released: fetched a month apart
    (both before the next quarter ends, while the history keeps growing), every period served
    on both days has the same values."""
    days = (
        dt.datetime(2024, 5, 20, 22, 0, tzinfo=dt.UTC),
        dt.datetime(2024, 6, 20, 22, 0, tzinfo=dt.UTC),
    )
    compared = 0
    for ticker in TICKERS:
        served = [
            SimulatorFundamentals(SimulatorSource(seed=0, clock=day)).statements(ticker, day)
            for day in days
        ]
        if served[0] is None:
            continue
        for statement in ("income", "balance", "cashflow"):
            for period in ("annual", "quarterly"):
                earlier, later = (s[statement][period] for s in served)
                for end in earlier.keys() & later.keys():
                    assert earlier[end] == later[end], (ticker, statement, period, end)
                    compared += 1
    assert compared > 100
