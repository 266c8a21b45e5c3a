"""The simulator's statements: what Yahoo would serve, built on numpy arrays per ticker.

The served document (restatements applied, fiscal years summed from their quarters, the served
window of years and quarters, earnings dates) equals an independent pandas construction of it
from the same quarters (`SimulatorFundamentals.quarters`, the model's one definition), value for
value and key for key, on several seeds, clocks and restatement rates; and a quarter once
released is served the same on every later fetch."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from marketflow_assets.calendar import EXCHANGE_TZ
from marketflow_assets.sources.fundamentals import YAHOO_FORMAT
from marketflow_assets.sources.simulator import SimulatorFaults, SimulatorSource
from marketflow_assets.sources.simulator_fundamentals import (
    BALANCE_ITEMS,
    CASHFLOW_ITEMS,
    INCOME_ITEMS,
    QUARTERS_SERVED,
    RESTATED_ITEMS,
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
    assert served > 0 or clock.year == 2000


# -- the reference: the served document built with pandas from the model's quarters ----------
def reference_statements(self, ticker: str, now: dt.datetime) -> dict | None:
    """What Yahoo serves for `ticker` at `now` (YAHOO_FORMAT)."""
    today = pd.Timestamp(now.astimezone(EXCHANGE_TZ).date())
    quarters = self.quarters(ticker, today.date())
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
