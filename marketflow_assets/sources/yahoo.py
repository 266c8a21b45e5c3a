"""Yahoo Finance through yfinance: daily and 1-minute bars (`Ticker.history`), profiles (`.info`).

Batching. Yahoo's chart API serves one symbol per request, and `yf.download` is only a threaded
loop over `Ticker.history` that, in yfinance 1.7, swallows every per-ticker exception (rate
limits included) into log lines and aligns all tickers on one index. So each ticker gets one
`Ticker.history` call for the whole date range, retried on its own. Tickers are processed in
batches of `batch_size`; when a call is still failing transiently after its retries (Yahoo keeps
throttling us or is unreachable), the rest of its batch is not attempted and is reported in
`errors`, and the next batch tries again.

Errors. yfinance is switched to raising (`yf.config.debug.hide_exceptions = False`) instead of
logging and returning an empty frame, and its exceptions are mapped to ours:
- YFRateLimitError / HTTP 429 -> RateLimitError, retried with backoff;
- network errors, timeouts, HTTP 5xx, error pages instead of JSON -> TransientProviderError,
  retried (yfinance's memo of GET responses is cleared first, or it would serve them again);
- YFTickerMissingError (no timezone / no prices: unknown or delisted) / HTTP 404 ->
  UnknownTickerError, not retried;
- anything else -> ProviderError.
Whatever still fails lands in `Payload.errors` under the ticker, and so does an empty frame.

Values are yfinance's, unchanged: `auto_adjust=False`, no repair, no rounding. Rows are only
stacked under a `Ticker` column and limited to the documented columns (dropping, for ETFs and
funds, yfinance's "Capital Gains", and for 1m bars "Adj Close" and the action columns). Tickers
of different exchanges keep their own time zones, so such a frame's time column holds tz-aware
timestamps of several zones (object dtype).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import yfinance as yf
from yfinance.data import YfData
from yfinance.exceptions import YFDataException, YFRateLimitError, YFTickerMissingError

from marketflow_assets.sources.base import (
    DAILY_PAYLOAD_COLUMNS,
    INTRADAY_LOOKBACK_DAYS,
    INTRADAY_MAX_DAYS_PER_REQUEST,
    INTRADAY_PAYLOAD_COLUMNS,
    TICKER_COLUMN,
    BarsQuery,
    Interval,
    MarketDataSource,
    Payload,
    ProviderError,
    ProviderWindowError,
    RateLimitError,
    TransientProviderError,
    UnknownTickerError,
    empty_bars_frame,
)
from marketflow_assets.sources.retry import Backoff, call_with_retries

DEFAULT_BACKOFF = Backoff()
DEFAULT_CACHE_DIR = Path(tempfile.gettempdir()) / "marketflow-yfinance-cache"
INTRADAY_LOOKBACK = dt.timedelta(days=INTRADAY_LOOKBACK_DAYS)
INTRADAY_MAX_SPAN_DAYS = INTRADAY_MAX_DAYS_PER_REQUEST  # Yahoo allows 8; callers chunk by 7
BARS_DATASETS = {"1d": "daily_bars", "1m": "intraday_bars_1m"}
BARS_COLUMNS = {"1d": DAILY_PAYLOAD_COLUMNS, "1m": INTRADAY_PAYLOAD_COLUMNS}


@functools.cache
def _configure_yfinance(cache_dir: Path) -> None:
    """yfinance's settings are process-wide, and its caches pick their folder on first use.

    The ticker->timezone, cookie and ISIN caches (SQLite) go to `cache_dir` instead of the
    user's cache folder under $HOME; yfinance raises instead of logging and returning empties.
    """
    yf.set_tz_cache_location(str(cache_dir))
    yf.config.debug.hide_exceptions = False


@dataclass
class _Outcome:
    """What a run over many tickers gathered: results and errors by ticker, calls made."""

    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    calls: int = 0


class YFinanceSource(MarketDataSource):
    name = "yfinance"

    def __init__(
        self,
        *,
        backoff: Backoff = DEFAULT_BACKOFF,
        sleep: Callable[[float], None] = time.sleep,
        batch_size: int = 50,
        rng: random.Random | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self._backoff = backoff
        self._sleep = sleep
        self._batch_size = batch_size
        self._rng = rng or random.Random()
        _configure_yfinance(cache_dir or DEFAULT_CACHE_DIR)

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def fetch_bars(self, query: BarsQuery) -> Payload:
        if query.interval == "1m":
            _check_intraday_window(query, self.now())
        kwargs = _history_kwargs(query)
        fetched_at = self.now()
        outcome = self._fetch_each(
            query.tickers, functools.partial(_history, kwargs=kwargs), what=f"{query.interval} bars"
        )
        return Payload(
            source=self.name,
            dataset=BARS_DATASETS[query.interval],
            request={**query.describe(), **self._call_details("Ticker.history", kwargs)},
            fetched_at=fetched_at,
            frame=_stack(outcome.results, query.interval),
            errors=outcome.errors,
            provider_calls=outcome.calls,
        )

    def fetch_profiles(self, tickers: tuple[str, ...]) -> Payload:
        fetched_at = self.now()
        outcome = self._fetch_each(tickers, _profile, what="profile")
        return Payload(
            source=self.name,
            dataset="company_profiles",
            request={"tickers": list(tickers), **self._call_details("Ticker.info", {})},
            fetched_at=fetched_at,
            frame=pd.DataFrame(),
            records=outcome.results,
            errors=outcome.errors,
            provider_calls=outcome.calls,
        )

    def _call_details(self, call: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {
            "provider_call": f"yfinance.{call}",
            "provider_kwargs": kwargs,
            "yfinance_version": yf.__version__,
            "batch_size": self._batch_size,
        }

    def _fetch_each(
        self, tickers: Sequence[str], fetch_one: Callable[[str], Any], *, what: str
    ) -> _Outcome:
        """`fetch_one` for every ticker, batch by batch; failures become `errors` by ticker."""
        outcome = _Outcome()
        for start in range(0, len(tickers), self._batch_size):
            batch = tickers[start : start + self._batch_size]
            for position, symbol in enumerate(batch):
                try:
                    outcome.results[symbol] = self._call(fetch_one, symbol, outcome, what=what)
                except TransientProviderError as error:
                    outcome.errors[symbol] = str(error)
                    skipped = f"not attempted: batch stopped after {symbol} failed ({error})"
                    outcome.errors.update(dict.fromkeys(batch[position + 1 :], skipped))
                    break
                except ProviderError as error:
                    outcome.errors[symbol] = str(error)
        return outcome

    def _call(
        self, fetch_one: Callable[[str], Any], symbol: str, outcome: _Outcome, *, what: str
    ) -> Any:
        """One provider call with retries; every attempt is counted in `outcome.calls`."""

        def attempt() -> Any:
            outcome.calls += 1
            try:
                return fetch_one(symbol)
            except Exception as exc:
                error = _as_provider_error(exc)
                if isinstance(error, TransientProviderError):
                    _forget_cached_responses()
                raise error from exc

        return call_with_retries(
            attempt,
            what=f"{what} {symbol}",
            backoff=self._backoff,
            sleep=self._sleep,
            rng=self._rng,
        )


def _history_kwargs(query: BarsQuery) -> dict[str, Any]:
    """`Ticker.history` arguments; Yahoo's `end` is exclusive, so it is the day after ours."""
    return {
        # A watermark (1m polling) asks only for bars from that instant on.
        "start": query.since if query.since is not None else query.start.isoformat(),
        "end": (query.end + dt.timedelta(days=1)).isoformat(),
        "interval": query.interval,
        "prepost": False,
        "actions": True,
        "auto_adjust": False,
        "back_adjust": False,
        "repair": False,
        "keepna": False,
        "rounding": False,
    }


def _check_intraday_window(query: BarsQuery, now: dt.datetime) -> None:
    # Yahoo checks period1 (midnight of the start date) against now - 30 days.
    earliest = (now - INTRADAY_LOOKBACK).date() + dt.timedelta(days=1)
    if query.start < earliest:
        raise ProviderWindowError(
            f"Yahoo serves 1m bars for the last {INTRADAY_LOOKBACK.days} days only: available "
            f"dates are {earliest}..{now.date()} (now {now:%Y-%m-%d %H:%M} UTC), "
            f"requested {query.start}..{query.end}"
        )
    span = (query.end - query.start).days + 1
    if span > INTRADAY_MAX_SPAN_DAYS:
        raise ProviderWindowError(
            f"Yahoo serves at most {INTRADAY_MAX_SPAN_DAYS} calendar days of 1m bars per request: "
            f"{query.start}..{query.end} spans {span} days; request it in chunks of "
            f"{INTRADAY_MAX_SPAN_DAYS} days"
        )


def _history(symbol: str, kwargs: dict[str, Any]) -> pd.DataFrame:
    frame = yf.Ticker(symbol).history(**kwargs)
    if frame.empty:
        raise ProviderError(
            f"yfinance returned no {kwargs['interval']} bars for "
            f"{kwargs['start']}..{kwargs['end']} (end exclusive)"
        )
    return frame


def _profile(symbol: str) -> dict[str, Any]:
    info = yf.Ticker(symbol).info
    # yfinance sets `symbol` whenever Yahoo returned a quote; without it the dict only holds
    # yfinance's own defaults.
    if "symbol" not in info:
        raise ProviderError(f"Yahoo returned no profile for {symbol}")
    return json.loads(json.dumps(info, default=_json_default))


def _json_default(value: Any) -> Any:
    """What `json.dumps` cannot take as is; everything else is landed unchanged."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dt.date):  # also datetime and pd.Timestamp
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable: {value!r}")


def _stack(frames: dict[str, pd.DataFrame], interval: Interval) -> pd.DataFrame:
    """One long frame: `Ticker`, then yfinance's index (Date/Datetime) and columns."""
    if not frames:
        return empty_bars_frame(interval)
    columns = BARS_COLUMNS[interval]
    stacked = pd.concat(frames).rename_axis([TICKER_COLUMN, columns[0]]).reset_index()
    return stacked[[TICKER_COLUMN, *columns]]


def _as_provider_error(error: Exception) -> ProviderError:
    """Map what yfinance raised (with hide_exceptions off) to our error classes."""
    if isinstance(error, ProviderError):
        return error
    response = getattr(error, "response", None)  # an HTTPError of either backend
    status = getattr(response, "status_code", None)
    reason = f"{type(error).__name__}: {error}"
    if response is not None:  # name the endpoint, by path only: the query holds the crumb
        reason += f" ({urlsplit(response.url).path})"
    if isinstance(error, YFRateLimitError) or status == 429:
        return RateLimitError(reason)
    if isinstance(error, YFTickerMissingError) or status == 404:
        return UnknownTickerError(reason)
    if _is_transient(error, status):
        return TransientProviderError(reason)
    return ProviderError(reason)


def _is_transient(error: Exception, status: int | None) -> bool:
    """5xx; network errors and timeouts (OSErrors in both HTTP backends, as are their HTTP
    errors, hence the status first); an error page where JSON was expected; and yfinance's
    YFDataException, raised for Yahoo's "Will be right back" page."""
    if status is not None:
        return status >= 500
    return isinstance(error, OSError | json.JSONDecodeError | YFDataException)


def _forget_cached_responses() -> None:
    """yfinance memoises GET responses for past date ranges (`YfData.cache_get`, an lru_cache),
    error pages included; drop them so that a retry asks Yahoo again."""
    YfData.cache_get.cache_clear()
