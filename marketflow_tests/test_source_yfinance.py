"""YFinanceSource driven through yfinance's own request and parsing code, offline.

Only the HTTP layer is fake: curl_cffi's `Session.request`, which every yfinance request goes
through, answers from fixtures/yahoo (bodies as Yahoo serves them). yfinance's cookie/crumb
handshake, its 429 handling in `YfData._make_request`, its timezone lookup and its chart and
quoteSummary parsing all run for real. yfinance's process-wide state (the YfData singleton and
its response cache, the SQLite caches, a counter of timezone look-ups) is reset for every test.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import pytest
import yfinance.base
import yfinance.cache as yf_cache
from curl_cffi import requests as curl_requests
from yfinance.data import SingletonMeta, YfData

from marketflow_assets.sources.base import (
    DAILY_PAYLOAD_COLUMNS,
    INTRADAY_PAYLOAD_COLUMNS,
    TICKER_COLUMN,
    BarsQuery,
    ProviderWindowError,
    RateLimitError,
)
from marketflow_assets.sources.retry import Backoff
from marketflow_assets.sources.yahoo import YFinanceSource

FIXTURES = Path(__file__).parent / "fixtures" / "yahoo"
NEW_YORK = "America/New_York"
DAILY = BarsQuery(("AAPL", "MSFT"), dt.date(2020, 8, 17), dt.date(2020, 8, 31))
INTRADAY = BarsQuery(("AAPL",), dt.date(2025, 11, 14), dt.date(2025, 11, 14), interval="1m")
INTRADAY_NOW = dt.datetime(2025, 11, 17, 15, 0, tzinfo=dt.UTC)
BACKOFF = Backoff(attempts=3, base_seconds=10.0)
SEED = 7
CHART = "/v8/finance/chart/"
RATE_LIMITED = (429, (FIXTURES / "rate_limited_429.txt").read_text())
BAD_GATEWAY = (502, "<html><body><h1>502 Bad Gateway</h1></body></html>")


def fixture_json(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def chart_result(name: str) -> dict:
    return fixture_json(name)["chart"]["result"][0]


def epoch(day: str) -> int:
    """Midnight of `day` in New York, as yfinance sends period1/period2."""
    return int(pd.Timestamp(day, tz=NEW_YORK).timestamp())


@dataclass
class FakeYahoo:
    """Yahoo's endpoints answered from the fixtures; every request is recorded."""

    # What the next chart requests get instead of their fixture: an error raised, or (status, body)
    failures: list[Exception | tuple[int, str]] = field(default_factory=list)
    refuse_always: set[str] = field(default_factory=set)  # symbols whose charts always get 429
    requests: list[tuple[str, dict]] = field(default_factory=list)

    def request(self, method: str, url: str, params=None, **_kwargs):
        """Stands in for `curl_cffi.requests.Session.request` (set on the class, so unbound)."""
        parts = urlsplit(url)
        self.requests.append((parts.path, dict(params or {})))
        status, body = self._answer(parts.hostname, parts.path, params or {})
        return _response(url, status, body)

    def chart_requests(self, symbol: str) -> list[dict]:
        return [params for path, params in self.requests if path == CHART + symbol]

    def _answer(self, host: str, path: str, params: dict) -> tuple[int, str]:
        if host == "fc.yahoo.com":
            return 200, ""  # no cookie; yfinance carries on without one
        if path == "/v1/test/getcrumb":
            return 200, "fake-crumb"
        if host == "guce.yahoo.com":
            return 200, "<html></html>"  # no consent form: yfinance falls back to fc.yahoo.com
        symbol = path.rsplit("/", 1)[-1]
        if path.startswith(CHART):
            return self._chart(symbol, params["interval"])
        if path.startswith("/v10/finance/quoteSummary/"):
            return _fixture(f"quoteSummary_{symbol}.json", f"quoteSummary_{symbol}_404.json")
        if path == "/v7/finance/quote":
            return _fixture(f"quote_{params['symbols']}.json")
        if path.startswith("/ws/fundamentals-timeseries/"):
            return _fixture(f"timeseries_{symbol}_trailingPegRatio.json")
        raise AssertionError(f"unexpected request to {host}{path}")

    def _chart(self, symbol: str, interval: str) -> tuple[int, str]:
        if symbol in self.refuse_always:
            return RATE_LIMITED
        if self.failures:
            failure = self.failures.pop(0)
            if isinstance(failure, Exception):
                raise failure
            return failure
        return _fixture(f"chart_{symbol}_{interval}.json", "chart_ZZZZ_404.json")


def _fixture(name: str, not_found: str = "") -> tuple[int, str]:
    """The fixture `name`, or else Yahoo's 404 answer `not_found`."""
    if (FIXTURES / name).exists():
        return 200, (FIXTURES / name).read_text()
    return 404, (FIXTURES / not_found).read_text()


def _response(url: str, status: int, body: str) -> curl_requests.Response:
    response = curl_requests.Response()
    response.url = url
    response.status_code = status
    response.ok = status < 400
    response.reason = HTTPStatus(status).phrase
    response.content = body.encode()
    response.headers["Content-Type"] = {
        "{": "application/json;charset=utf-8",
        "<": "text/html",
    }.get(body[:1], "text/plain")
    return response


@pytest.fixture
def yahoo(monkeypatch: pytest.MonkeyPatch) -> FakeYahoo:
    fake = FakeYahoo()
    monkeypatch.setattr(curl_requests.Session, "request", fake.request)
    monkeypatch.setattr(SingletonMeta, "_instances", {})  # a fresh YfData (crumb, strategy)
    YfData.cache_get.cache_clear()
    monkeypatch.setattr(yf_cache._TzCacheManager, "_tz_cache", yf_cache._TzCacheDummy())
    monkeypatch.setattr(yf_cache._CookieCacheManager, "_Cookie_cache", yf_cache._CookieCacheDummy())
    monkeypatch.setattr(yfinance.base, "_tz_info_fetch_ctr", 0)

    def no_real_sleep(seconds: float) -> None:
        raise AssertionError(f"real sleep of {seconds}s")

    monkeypatch.setattr(time, "sleep", no_real_sleep)
    return fake


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def source(yahoo: FakeYahoo, sleeps: list[float], tmp_path: Path) -> YFinanceSource:
    return YFinanceSource(
        backoff=BACKOFF,
        sleep=sleeps.append,
        rng=random.Random(SEED),
        cache_dir=tmp_path / "yfinance-cache",
    )


def rows(frame: pd.DataFrame, ticker: str) -> pd.DataFrame:
    return frame[frame[TICKER_COLUMN] == ticker].set_index(frame.columns[1])


def test_daily_bars_are_yahoos_values_stacked_by_ticker(source: YFinanceSource) -> None:
    payload = source.fetch_bars(DAILY)

    assert (payload.source, payload.dataset, payload.errors) == ("yfinance", "daily_bars", {})
    assert payload.provider_calls == 2
    assert payload.request["tickers"] == ["AAPL", "MSFT"]
    assert payload.request["provider_kwargs"]["auto_adjust"] is False
    assert payload.fetched_at.tzinfo is not None
    assert list(payload.frame.columns) == [TICKER_COLUMN, *DAILY_PAYLOAD_COLUMNS]
    assert str(payload.frame["Date"].dt.tz) == NEW_YORK
    for ticker in ("AAPL", "MSFT"):
        bars = rows(payload.frame, ticker)
        served = chart_result(f"chart_{ticker}_1d.json")["indicators"]
        assert (bars.index == bars.index.normalize()).all()  # exchange midnight
        assert bars.index[0] == pd.Timestamp("2020-08-17", tz=NEW_YORK)
        for column in ("open", "high", "low", "close", "volume"):
            assert bars[column.title()].tolist() == served["quote"][0][column]
        assert bars["Adj Close"].tolist() == served["adjclose"][0]["adjclose"]

    aapl, msft = rows(payload.frame, "AAPL"), rows(payload.frame, "MSFT")
    split_day = pd.Timestamp("2020-08-31", tz=NEW_YORK)
    ex_day = pd.Timestamp("2020-08-19", tz=NEW_YORK)
    assert aapl["Stock Splits"].to_dict() == {
        day: 4.0 if day == split_day else 0.0 for day in aapl.index
    }
    assert msft["Dividends"].to_dict() == {
        day: 0.51 if day == ex_day else 0.0 for day in msft.index
    }
    assert (aapl["Adj Close"] == aapl["Close"]).all()  # no dividend after these rows
    before_ex = msft.index < ex_day
    assert (msft["Adj Close"][before_ex] < msft["Close"][before_ex]).all()
    assert (msft["Adj Close"][~before_ex] == msft["Close"][~before_ex]).all()


def test_end_date_is_inclusive(source: YFinanceSource, yahoo: FakeYahoo) -> None:
    payload = source.fetch_bars(DAILY)

    (history,) = [p for p in yahoo.chart_requests("AAPL") if "period2" in p]
    assert history["period1"] == epoch("2020-08-17")
    assert history["period2"] == epoch("2020-09-01")  # yfinance's end is exclusive
    assert rows(payload.frame, "AAPL").index[-1] == pd.Timestamp("2020-08-31", tz=NEW_YORK)


class NewYorkForEverySymbol(yf_cache._TzCacheDummy):
    """A tz cache that learnt the symbols' time zones while they were listed."""

    def lookup(self, tkr: str) -> str:
        return NEW_YORK


@pytest.mark.parametrize(
    ("timezone_lookups_so_far", "timezone_cache", "reason"),
    [
        # yfinance's first two unknown symbols per process also ask quoteSummary for a timezone
        (0, None, "HTTPError: HTTP Error 404: Not Found (/v10/finance/quoteSummary/ZZZZ)"),
        (2, None, "YFTzMissingError: $ZZZZ: possibly delisted; no timezone found"),
        # a symbol delisted since its time zone was cached: Yahoo's own reason
        (
            2,
            NewYorkForEverySymbol(),
            "YFPricesMissingError: $ZZZZ: No data found, symbol may be delisted",
        ),
    ],
    ids=["timezone-from-quoteSummary", "no-timezone", "timezone-cached"],
)
def test_unknown_ticker_is_reported_by_name(
    source: YFinanceSource,
    sleeps: list[float],
    monkeypatch: pytest.MonkeyPatch,
    timezone_lookups_so_far: int,
    timezone_cache: yf_cache._TzCacheDummy | None,
    reason: str,
) -> None:
    monkeypatch.setattr(yfinance.base, "_tz_info_fetch_ctr", timezone_lookups_so_far)
    if timezone_cache:
        monkeypatch.setattr(yf_cache._TzCacheManager, "_tz_cache", timezone_cache)

    payload = source.fetch_bars(BarsQuery(("ZZZZ", "AAPL"), DAILY.start, DAILY.end))

    assert payload.errors == {"ZZZZ": reason}
    assert payload.tickers_with_data == ["AAPL"]
    assert len(rows(payload.frame, "AAPL")) == 11
    assert (payload.provider_calls, sleeps) == (2, [])  # an unknown symbol is not retried


def test_rate_limit_is_retried_with_backoff(
    source: YFinanceSource, yahoo: FakeYahoo, sleeps: list[float]
) -> None:
    # yfinance re-sends a refused request once itself (other cookie strategy) before raising
    # YFRateLimitError, so 4 refusals fail two of our attempts.
    yahoo.failures = [RATE_LIMITED] * 4

    payload = source.fetch_bars(DAILY)

    assert payload.errors == {}
    assert payload.tickers_with_data == ["AAPL", "MSFT"]
    assert payload.provider_calls == 4  # AAPL thrice, MSFT once
    rng = random.Random(SEED)
    assert sleeps == [BACKOFF.delay(attempt, RateLimitError(), rng) for attempt in range(2)]
    assert all(delay >= BACKOFF.rate_limit_floor_seconds for delay in sleeps)


@pytest.mark.parametrize(
    "failures",
    [
        [curl_requests.exceptions.DNSError("Could not resolve host: query2.finance.yahoo.com")],
        [BAD_GATEWAY, BAD_GATEWAY],  # an HTML error page where JSON was expected
    ],
    ids=["network", "bad-gateway"],
)
def test_transient_errors_are_retried(
    source: YFinanceSource, yahoo: FakeYahoo, sleeps: list[float], failures: list
) -> None:
    yahoo.failures = failures

    payload = source.fetch_bars(DAILY)

    assert payload.errors == {}
    assert payload.tickers_with_data == ["AAPL", "MSFT"]
    assert (payload.provider_calls, len(sleeps)) == (3, 1)


def test_rate_limit_that_never_ends_lands_in_errors(
    yahoo: FakeYahoo, sleeps: list[float], tmp_path: Path
) -> None:
    yahoo.refuse_always = {"AAPL", "MSFT"}
    source = YFinanceSource(backoff=BACKOFF, sleep=sleeps.append, batch_size=1, cache_dir=tmp_path)

    payload = source.fetch_bars(DAILY)

    assert payload.frame.empty
    assert list(payload.frame.columns) == [TICKER_COLUMN, *DAILY_PAYLOAD_COLUMNS]
    assert sorted(payload.errors) == ["AAPL", "MSFT"]
    for reason in payload.errors.values():
        assert "YFRateLimitError: Too Many Requests" in reason
    assert payload.provider_calls == 2 * BACKOFF.attempts
    assert len(sleeps) == 2 * (BACKOFF.attempts - 1)


def test_a_failing_batch_stops_without_failing_other_batches(
    yahoo: FakeYahoo, sleeps: list[float], tmp_path: Path
) -> None:
    yahoo.refuse_always = {"AAPL"}
    source = YFinanceSource(backoff=BACKOFF, sleep=sleeps.append, batch_size=2, cache_dir=tmp_path)

    payload = source.fetch_bars(BarsQuery(("AAPL", "ZZZZ", "MSFT"), DAILY.start, DAILY.end))

    assert "Too Many Requests" in payload.errors["AAPL"]
    assert payload.errors["ZZZZ"].startswith("not attempted: batch stopped after AAPL failed")
    assert yahoo.chart_requests("ZZZZ") == []
    assert payload.tickers_with_data == ["MSFT"]


def test_one_minute_bars_start_on_exchange_minutes(
    source: YFinanceSource, yahoo: FakeYahoo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(source, "now", lambda: INTRADAY_NOW)

    payload = source.fetch_bars(INTRADAY)

    assert (payload.dataset, payload.errors, payload.fetched_at) == (
        "intraday_bars_1m",
        {},
        INTRADAY_NOW,
    )
    assert list(payload.frame.columns) == [TICKER_COLUMN, *INTRADAY_PAYLOAD_COLUMNS]
    (history,) = [p for p in yahoo.chart_requests("AAPL") if p["interval"] == "1m"]
    assert (history["period2"], history["includePrePost"]) == (epoch("2025-11-15"), False)
    bars = rows(payload.frame, "AAPL")
    expected_minutes = pd.date_range("2025-11-14 09:30", periods=30, freq="1min", tz=NEW_YORK)
    assert bars.index.equals(expected_minutes)
    served = chart_result("chart_AAPL_1m.json")["indicators"]["quote"][0]
    assert bars["Close"].tolist() == served["close"]
    assert bars["Volume"].tolist() == served["volume"]


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (
            "2025-10-14",
            "2025-10-17",
            r"last 30 days only: available dates are 2025-10-19\.\.2025-11-17",
        ),
        ("2025-11-03", "2025-11-10", r"at most 7 calendar days .* spans 8 days"),
    ],
    ids=["older-than-30-days", "longer-than-7-days"],
)
def test_one_minute_requests_outside_yahoos_window_are_refused(
    source: YFinanceSource,
    yahoo: FakeYahoo,
    monkeypatch: pytest.MonkeyPatch,
    start: str,
    end: str,
    message: str,
) -> None:
    monkeypatch.setattr(source, "now", lambda: INTRADAY_NOW)
    query = BarsQuery(("AAPL",), dt.date.fromisoformat(start), dt.date.fromisoformat(end), "1m")

    with pytest.raises(ProviderWindowError, match=message):
        source.fetch_bars(query)
    assert yahoo.requests == []


def test_profiles_are_yahoos_info_dicts(source: YFinanceSource) -> None:
    payload = source.fetch_profiles(("AAPL", "ZZZZ"))

    assert (payload.dataset, payload.provider_calls) == ("company_profiles", 2)
    assert payload.frame.empty
    assert "HTTP Error 404" in payload.errors["ZZZZ"]
    info = payload.records["AAPL"]
    assert {"longName", "sector", "industry", "exchange", "currency"} <= info.keys()
    assert (info["longName"], info["sector"], info["industry"]) == (
        "Apple Inc.",
        "Technology",
        "Consumer Electronics",
    )
    assert (info["exchange"], info["currency"], info["trailingPegRatio"]) == ("NMS", "USD", 2.4051)
    assert info["companyOfficers"][0]["title"] == "CEO & Director"
    json.dumps(payload.records, allow_nan=False)


@pytest.fixture
def real_caches(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """yfinance's SQLite caches, unopened, put back as they were afterwards."""
    managers = (yf_cache._TzDBManager, yf_cache._CookieDBManager, yf_cache._ISINDBManager)
    for manager in managers:
        monkeypatch.setattr(manager, "_db", None)
        monkeypatch.setattr(manager, "_cache_dir", manager._cache_dir)
    monkeypatch.setattr(yf_cache._TzCacheManager, "_tz_cache", None)
    monkeypatch.setattr(yf_cache._CookieCacheManager, "_Cookie_cache", None)
    yield
    for manager in managers:
        manager.close_db()


def test_yfinance_caches_live_in_the_configured_folder(
    yahoo: FakeYahoo, real_caches: None, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "yfinance-cache"
    source = YFinanceSource(sleep=lambda _: None, cache_dir=cache_dir)

    source.fetch_bars(DAILY)

    assert {path.name for path in cache_dir.glob("*.db")} == {"tkr-tz.db", "cookies.db"}
    assert yf_cache.get_tz_cache().lookup("MSFT") == NEW_YORK
