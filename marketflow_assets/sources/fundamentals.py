"""Financial statements: the interface every fundamentals source implements, and the payloads.

A fundamentals source answers `fetch_statements(tickers)` with a `Payload` whose `records` hold
one JSON document per ticker, in the provider's own shape (landed unchanged in raw):

- `yahoo-statements/1` (yfinance, simulator): yfinance's statement tables as it parsed them from
  Yahoo's fundamentals-timeseries endpoint, `{statement: {period_type: {period_end:
  {line_item: value}}}}` with statement in income/balance/cashflow, period_type in
  annual/quarterly and Yahoo's line-item names (TotalRevenue, NetIncome, ...); plus
  `earnings_dates`: the earnings-release timestamps Yahoo lists (ISO text), the only
  announcement dates Yahoo gives; and `currency` where known.
- `edgar-companyfacts` (SEC EDGAR): the `companyfacts` JSON exactly as data.sec.gov serves it.
- `marketflow-statements/1` (csv source, file drops): `{"rows": [...]}` with the columns of
  the documented CSV format below.

The CSV format (`<MARKETFLOW_CSV_DIR>/fundamentals/<TICKER>.csv`, or a JSON file holding a list
of the same objects), one row per number:

    statement,period_type,period_end,line_item,value,currency,reported_at
    income,quarterly,2024-03-30,TotalRevenue,90753000000,USD,2024-05-02
    balance,quarterly,2024-03-30,StockholdersEquity,74194000000,USD,2024-05-02

`statement` is income, balance or cashflow; `period_type` annual or quarterly; `period_end` and
`reported_at` (the day the number was announced or filed; may be empty) are ISO dates; `value`
is in currency units (not thousands), capital expenditure negative as Yahoo gives it; line items
use Yahoo's names (see `LINE_ITEMS`). `transforms/fundamentals.py` types all three formats into
the same bronze rows.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod

import pandas as pd

from marketflow_assets.sources.base import Payload

DATASET = "financial_statements"
YAHOO_FORMAT = "yahoo-statements/1"
EDGAR_FORMAT = "edgar-companyfacts"
LONG_FORMAT = "marketflow-statements/1"
LONG_COLUMNS = (
    "statement",
    "period_type",
    "period_end",
    "line_item",
    "value",
    "currency",
    "reported_at",
)
# yfinance's names for the statements, and ours.
YF_STATEMENTS = {"income": "income", "balance-sheet": "balance", "cash-flow": "cashflow"}
YF_FREQUENCIES = {"yearly": "annual", "quarterly": "quarterly"}

# The line items the ratios use, by statement (Yahoo's names). Sources may serve many more;
# every one is kept in bronze and silver.
LINE_ITEMS = {
    "income": (
        "TotalRevenue",
        "CostOfRevenue",
        "GrossProfit",
        "OperatingIncome",
        "NetIncome",
        "EBITDA",
        "ReconciledDepreciation",
        "DilutedAverageShares",
    ),
    "balance": (
        "TotalAssets",
        "TotalLiabilitiesNetMinorityInterest",
        "StockholdersEquity",
        "TotalEquityGrossMinorityInterest",
        "CurrentAssets",
        "CurrentLiabilities",
        "CashAndCashEquivalents",
        "TotalDebt",
        "OrdinarySharesNumber",
    ),
    "cashflow": (
        "OperatingCashFlow",
        "CapitalExpenditure",
        "FreeCashFlow",
        "CashDividendsPaid",
    ),
}


class FundamentalsSource(ABC):
    """A provider of financial statements (yfinance, SEC EDGAR, the simulator, CSV files)."""

    name: str

    @abstractmethod
    def now(self) -> dt.datetime:
        """The provider's clock (UTC)."""

    def unavailable(self) -> str | None:
        """Why this source serves no statements at all (e.g. a CSV folder without a
        `fundamentals/` subfolder), or None. Such a source is skipped, not failed."""
        return None

    @abstractmethod
    def fetch_statements(self, tickers: tuple[str, ...]) -> Payload:
        """One statements document per ticker in `records` (one request per ticker, never per
        period); tickers without data are named in `errors` with the reason."""


def statements_payload(
    source: str,
    request: dict,
    fetched_at: dt.datetime,
    records: dict,
    errors: dict[str, str],
    calls: int,
) -> Payload:
    return Payload(
        source=source,
        dataset=DATASET,
        request=request,
        fetched_at=fetched_at,
        frame=pd.DataFrame(),
        records=records,
        errors=errors,
        provider_calls=calls,
    )
