"""The one small interface every market-data source implements.

Modelled on OpenBB's query -> extract -> transform split:
- query: a `BarsQuery` (tickers, inclusive session dates, interval) or a list of tickers;
- extract: `MarketDataSource.fetch_bars` / `fetch_profiles` call the provider and return its
  payload *unchanged* (Yahoo's column names and values; tickers stacked into rows) together with
  the request metadata and a per-ticker account of what came back;
- transform: one function for all sources, in `marketflow_assets.transforms.payloads`, turns a
  payload into typed bronze rows. Every source serves Yahoo-shaped payloads, so there is one
  transform, not one per source.

A source never returns a silent empty result: a ticker with no rows is named in
`Payload.errors` with the reason.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from marketflow_assets.calendar import EXCHANGE_TZ

Interval = Literal["1d", "1m"]

# Yahoo's column names, as yfinance's history() returns them (auto_adjust=False, actions=True).
DAILY_PAYLOAD_COLUMNS = (
    "Date",
    "Open",
    "High",
    "Low",
    "Close",
    "Adj Close",
    "Volume",
    "Dividends",
    "Stock Splits",
)
INTRADAY_PAYLOAD_COLUMNS = ("Datetime", "Open", "High", "Low", "Close", "Volume")
TICKER_COLUMN = "Ticker"


class ProviderError(Exception):
    """The provider could not serve a request."""


class TransientProviderError(ProviderError):
    """Worth retrying: network errors, 5xx, timeouts."""


class RateLimitError(TransientProviderError):
    """HTTP 429 / "Too Many Requests": retried with backoff."""


class UnknownTickerError(ProviderError):
    """The provider has no data for this symbol (unknown or delisted)."""


class PayloadFormatError(ProviderError):
    """Input that cannot be read as the expected format; the message names the file/ticker."""


class ProviderWindowError(ProviderError):
    """The provider does not serve the requested interval for these dates (e.g. 1m > 30 days)."""


# Yahoo's one-minute limits: history for the last 30 days, at most 7 days per request.
INTRADAY_LOOKBACK_DAYS = 30
INTRADAY_MAX_DAYS_PER_REQUEST = 7


@dataclass(frozen=True)
class BarsQuery:
    tickers: tuple[str, ...]
    start: dt.date  # first date, inclusive
    end: dt.date  # last date, inclusive
    interval: Interval = "1d"
    since: dt.datetime | None = None  # 1m only: bars starting at or after this instant

    def describe(self) -> dict[str, Any]:
        described = {
            "tickers": list(self.tickers),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "interval": self.interval,
        }
        if self.since is not None:
            described["since"] = self.since.isoformat()
        return described


@dataclass
class Payload:
    """A provider response: rows exactly as served, stacked by ticker, plus request metadata."""

    source: str
    dataset: str  # "daily_bars", "intraday_bars_1m" or "company_profiles"
    request: dict[str, Any]
    fetched_at: dt.datetime  # UTC, provider clock
    frame: pd.DataFrame  # `Ticker` + the provider's own columns (bars); empty for profiles
    records: dict[str, Any] = field(default_factory=dict)  # JSON payloads (profiles), by ticker
    errors: dict[str, str] = field(default_factory=dict)  # ticker -> why nothing came back
    provider_calls: int = 0

    @property
    def tickers_with_data(self) -> list[str]:
        if self.records:
            return sorted(self.records)
        if self.frame.empty:
            return []
        return sorted(self.frame[TICKER_COLUMN].unique())


class MarketDataSource(ABC):
    """A provider of bars and company profiles (yfinance, the simulator, CSV files)."""

    name: str

    @abstractmethod
    def now(self) -> dt.datetime:
        """The provider's clock (UTC). Real time, except the simulator's injectable clock."""

    @abstractmethod
    def fetch_bars(self, query: BarsQuery) -> Payload:
        """Bars for every ticker of the query over [start, end], one provider request per
        ticker batch and date range (never one per day). Per-ticker failures go to
        `Payload.errors`; a failure of the whole request raises `ProviderError`."""

    @abstractmethod
    def fetch_profiles(self, tickers: tuple[str, ...]) -> Payload:
        """Company profile records (Yahoo `info`-shaped dicts) keyed by ticker."""

    def intraday_window(self) -> tuple[dt.date, dt.date]:
        """First and last dates one-minute bars can be requested for, by the provider clock."""
        today = self.now().astimezone(EXCHANGE_TZ).date()
        return today - dt.timedelta(days=INTRADAY_LOOKBACK_DAYS - 1), today

    def describe(self) -> dict[str, Any]:
        return {"source": self.name}


def empty_bars_frame(interval: Interval) -> pd.DataFrame:
    columns = DAILY_PAYLOAD_COLUMNS if interval == "1d" else INTRADAY_PAYLOAD_COLUMNS
    return pd.DataFrame(columns=[TICKER_COLUMN, *columns])
