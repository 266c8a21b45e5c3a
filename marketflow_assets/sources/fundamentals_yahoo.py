"""Financial statements from Yahoo Finance through yfinance (`yahoo-statements/1` documents).

Per ticker: the income statement, balance sheet and cash flow, annual and quarterly
(`Ticker.get_income_stmt/get_balance_sheet/get_cash_flow`, yfinance's parsing of Yahoo's
fundamentals-timeseries endpoint: ~4 years and ~5 quarters, indexed by period end, no filing
date), and the earnings calendar (`Ticker.get_earnings_dates`), the only announcement dates
Yahoo gives. Values are yfinance's, unchanged (NaN cells are left out).

Retry and failure semantics are the price adapter's (`YFinanceSource`): yfinance raises instead
of logging, its exceptions map to ours, transient ones are retried per ticker with backoff, a
batch stops after a ticker keeps failing transiently, and every ticker without statements is
named in `Payload.errors`. A missing earnings calendar is not an error: the periods then get
`known_at` from the documented lags.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import yfinance as yf

from marketflow_assets.sources.base import Payload, ProviderError
from marketflow_assets.sources.fundamentals import (
    YAHOO_FORMAT,
    YF_FREQUENCIES,
    FundamentalsSource,
    statements_payload,
)
from marketflow_assets.sources.yahoo import YFinanceSource

EARNINGS_DATES_LIMIT = 25  # ~6 years of quarterly releases; Yahoo's page size


class YFinanceFundamentals(YFinanceSource, FundamentalsSource):
    name = "yfinance"

    def fetch_statements(self, tickers: tuple[str, ...]) -> Payload:
        fetched_at = self.now()
        outcome = self._fetch_each(tickers, _statements, what="statements")
        return statements_payload(
            self.name,
            {
                "tickers": list(tickers),
                **self._call_details(
                    "Ticker.get_income_stmt/get_balance_sheet/get_cash_flow/get_earnings_dates",
                    {"freq": list(YF_FREQUENCIES), "earnings_dates_limit": EARNINGS_DATES_LIMIT},
                ),
            },
            fetched_at,
            outcome.results,
            outcome.errors,
            outcome.calls,
        )


def _statements(symbol: str) -> dict[str, Any]:
    ticker = yf.Ticker(symbol)
    getters = {
        "income": ticker.get_income_stmt,
        "balance": ticker.get_balance_sheet,
        "cashflow": ticker.get_cash_flow,
    }
    document: dict[str, Any] = {"format": YAHOO_FORMAT, "currency": None}
    for statement, get in getters.items():
        document[statement] = {
            period_type: _table(get(freq=freq)) for freq, period_type in YF_FREQUENCIES.items()
        }
    if not any(document[s][p] for s in getters for p in YF_FREQUENCIES.values()):
        raise ProviderError(f"Yahoo returned no financial statements for {symbol}")
    dates = ticker.get_earnings_dates(limit=EARNINGS_DATES_LIMIT)
    document["earnings_dates"] = (
        [] if dates is None or dates.empty else [ts.isoformat() for ts in dates.index]
    )
    return document


def _table(frame: pd.DataFrame | None) -> dict[str, dict[str, float]]:
    """yfinance's table (line items x period ends) as {period_end: {line_item: value}}."""
    if frame is None or frame.empty:
        return {}
    return {
        pd.Timestamp(end).strftime("%Y-%m-%d"): {
            item: float(value)
            for item, value in frame[end].items()
            if value is not None and not math.isnan(value)
        }
        for end in frame.columns
    }
