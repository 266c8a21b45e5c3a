"""Financial statements from Yahoo Finance through yfinance (`yahoo-statements/1` documents).

Per ticker: the income statement, balance sheet and cash flow, annual and quarterly
(`Ticker.get_income_stmt/get_balance_sheet/get_cash_flow`, yfinance's parsing of Yahoo's
fundamentals-timeseries endpoint: ~4 years and ~5 quarters, indexed by period end, no filing
date); the earnings calendar (`Ticker.get_earnings_dates`), Yahoo's announcement dates; the
SEC filings Yahoo lists (`Ticker.get_sec_filings`: date and form of each 10-K/10-Q, US filers
only), the dates used where no earnings date answers for a period; and the shares-outstanding
history (`Ticker.get_shares_full`, the same timeseries endpoint's `shares_out` series over
`SHARES_HISTORY_DAYS`), which gold uses for market capitalisation per session. Values are
yfinance's, unchanged (NaN cells are left out).

Retry and failure semantics are the price adapter's (`YFinanceSource`): yfinance raises instead
of logging, its exceptions map to ours, transient ones are retried per ticker with backoff, a
batch stops after a ticker keeps failing transiently, and every ticker without statements is
named in `Payload.errors`. A missing earnings calendar is not an error: the periods then get
`known_at` from the documented lags; nor are a missing filing list (non-US tickers) or share
history (the balance sheet's share count is used then).
"""

from __future__ import annotations

import datetime as dt
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
SHARES_HISTORY_DAYS = 5 * 366  # as far back as the statements Yahoo serves
# The SEC forms whose dates answer for a period (amendments are not the period's first report).
FILING_FORMS = ("10-K", "10-Q", "20-F", "40-F")


class YFinanceFundamentals(YFinanceSource, FundamentalsSource):
    name = "yfinance"

    def fetch_statements(self, tickers: tuple[str, ...]) -> Payload:
        fetched_at = self.now()
        shares_start = (fetched_at - dt.timedelta(days=SHARES_HISTORY_DAYS)).date()
        outcome = self._fetch_each(
            tickers,
            lambda symbol: _statements(symbol, shares_start),
            what="statements",
        )
        return statements_payload(
            self.name,
            {
                "tickers": list(tickers),
                **self._call_details(
                    "Ticker.get_income_stmt/get_balance_sheet/get_cash_flow/get_earnings_dates"
                    "/get_sec_filings/get_shares_full",
                    {
                        "freq": list(YF_FREQUENCIES),
                        "earnings_dates_limit": EARNINGS_DATES_LIMIT,
                        "shares_start": shares_start.isoformat(),
                    },
                ),
            },
            fetched_at,
            outcome.results,
            outcome.errors,
            outcome.calls,
        )


def _statements(symbol: str, shares_start: dt.date) -> dict[str, Any]:
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
    document["sec_filings"] = _filings(ticker)
    shares = ticker.get_shares_full(start=shares_start.isoformat())
    document["shares"] = (
        {}
        if shares is None or shares.empty
        else {ts.strftime("%Y-%m-%d"): float(n) for ts, n in shares.dropna().items()}
    )
    return document


def _filings(ticker: yf.Ticker) -> list[dict[str, str]]:
    """The 10-K/10-Q (20-F, 40-F) filings Yahoo lists, as {date, form}. Yahoo's quoteSummary
    has no `secFilings` module for non-US listings; yfinance then fails to index it (KeyError):
    no filing dates, the period-end lags apply."""
    try:
        filings = ticker.get_sec_filings()
    except (KeyError, IndexError):
        return []
    return [
        {"date": f["date"].isoformat(), "form": f["type"]}
        for f in filings or []
        if f.get("type") in FILING_FORMS
    ]


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
