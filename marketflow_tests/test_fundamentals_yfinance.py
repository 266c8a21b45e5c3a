"""YFinanceFundamentals through yfinance's own request and parsing code, offline.

The fake HTTP layer is the price adapter tests' (`FakeYahoo`: curl_cffi's `Session.request`
answers from fixtures/yahoo); here it also serves the fundamentals-timeseries endpoint (only the
types a request names, as Yahoo does) and the earnings-calendar page yfinance scrapes.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest

from marketflow_assets.sources.fundamentals import YAHOO_FORMAT
from marketflow_assets.sources.fundamentals_yahoo import YFinanceFundamentals
from marketflow_assets.transforms.fundamentals import statement_rows
from marketflow_tests.test_source_yfinance import (  # noqa: F401  (fixtures)
    BACKOFF,
    FIXTURES,
    RATE_LIMITED,
    SEED,
    FakeYahoo,
    _response,
    sleeps,
    yahoo,
)

TIMESERIES = "/ws/fundamentals-timeseries/v1/finance/timeseries/"


@dataclass
class FakeYahooFundamentals(FakeYahoo):
    timeseries_failures: int = 0  # the next N timeseries requests get HTTP 429

    def request(self, method: str, url: str, params=None, **kwargs):
        parts = urlsplit(url)
        if parts.path.startswith(TIMESERIES) or parts.path == "/calendar/earnings":
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            self.requests.append((parts.path, {**query, **dict(params or {})}))
            return _response(url, *self._fundamentals(parts.path, query))
        return super().request(method, url, params, **kwargs)

    def _fundamentals(self, path: str, query: dict) -> tuple[int, str]:
        symbol = path.rsplit("/", 1)[-1] if path.startswith(TIMESERIES) else query["symbol"]
        if path == "/calendar/earnings":
            page = FIXTURES / f"earnings_{symbol}.html"
            return (200, page.read_text()) if page.exists() else (200, "<html></html>")
        if self.timeseries_failures:
            self.timeseries_failures -= 1
            return RATE_LIMITED
        fixture = FIXTURES / f"timeseries_{symbol}_fundamentals.json"
        if not fixture.exists():  # Yahoo's answer for a symbol it does not know
            return 200, json.dumps({"timeseries": {"result": [], "error": None}})
        body = json.loads(fixture.read_text())
        served = {r["meta"]["type"][0]: r for r in body["timeseries"]["result"]}
        # Yahoo answers every requested type; types without data carry only their meta.
        body["timeseries"]["result"] = [
            served.get(kind, {"meta": {"symbol": [symbol], "type": [kind]}})
            for kind in query["type"].split(",")
        ]
        return 200, json.dumps(body)


@pytest.fixture
def fake(yahoo: FakeYahoo, monkeypatch: pytest.MonkeyPatch) -> FakeYahooFundamentals:  # noqa: F811
    from curl_cffi import requests as curl_requests

    fake = FakeYahooFundamentals()
    monkeypatch.setattr(curl_requests.Session, "request", fake.request)
    return fake


@pytest.fixture
def source(fake, sleeps: list[float], tmp_path: Path) -> YFinanceFundamentals:  # noqa: F811
    return YFinanceFundamentals(
        backoff=BACKOFF, sleep=sleeps.append, rng=random.Random(SEED), cache_dir=tmp_path
    )


def test_statements_are_yfinances_tables_with_release_dates(source, fake) -> None:
    payload = source.fetch_statements(("AAPL",))

    assert (payload.dataset, payload.errors) == ("financial_statements", {})
    doc = payload.records["AAPL"]
    assert doc["format"] == YAHOO_FORMAT
    assert doc["income"]["annual"]["2023-09-30"]["TotalRevenue"] == 383_285_000_000
    assert doc["income"]["annual"]["2022-09-30"] == {
        "TotalRevenue": 394_328_000_000,
        "NetIncome": 99_803_000_000,
    }
    assert doc["balance"]["annual"]["2023-09-30"]["StockholdersEquity"] == 62_146_000_000
    assert doc["cashflow"]["annual"]["2023-09-30"]["CapitalExpenditure"] == -10_959_000_000
    assert sorted(doc["income"]["quarterly"]) == [
        "2022-12-31", "2023-03-31", "2023-06-30", "2023-09-30", "2023-12-31"
    ]  # fmt: skip
    assert doc["earnings_dates"][:2] == ["2024-02-01T16:00:00-05:00", "2023-11-02T16:00:00-04:00"]
    # One request per statement and frequency, one for the earnings calendar; none per period.
    paths = [path for path, _ in fake.requests if path.startswith((TIMESERIES, "/calendar"))]
    assert len(paths) == 7
    json.dumps(payload.records, allow_nan=False)


def test_bronze_rows_take_the_release_after_each_period_end(source) -> None:
    payload = source.fetch_statements(("AAPL",))
    documents = pd.DataFrame(
        {
            "ticker": ["AAPL"],
            "record": [json.dumps(payload.records["AAPL"])],
            "_source": ["yfinance"],
            "_fetch_id": ["f1"],
            "_fetched_at": [pd.Timestamp("2024-02-10", tz="UTC")],
            "_object_key": ["raw/yfinance/financial_statements/x.json"],
        }
    )

    rows = statement_rows(documents).set_index(["period_type", "period_end", "line_item"])

    fy23 = rows.loc[("annual", pd.Timestamp("2023-09-30"), "NetIncome")]
    assert (fy23["value"], fy23["reported_at"]) == (96_995_000_000, pd.Timestamp("2023-11-02"))
    assert fy23["reported_via"] == "earnings_date"
    q1 = rows.loc[("quarterly", pd.Timestamp("2023-12-31"), "TotalRevenue")]
    assert q1["reported_at"] == pd.Timestamp("2024-02-01")
    fy22 = rows.loc[("annual", pd.Timestamp("2022-09-30"), "NetIncome")]
    assert fy22["reported_at"] == pd.Timestamp("2022-10-27")  # Apple's release of 2022-10-27


def test_unknown_ticker_is_named_and_not_retried(source, sleeps) -> None:  # noqa: F811
    payload = source.fetch_statements(("ZZZZ", "AAPL"))

    assert list(payload.records) == ["AAPL"]
    assert "Empty fundamentals-timeseries result" in payload.errors["ZZZZ"]
    assert sleeps == []


def test_rate_limit_is_retried_with_backoff(source, fake, sleeps) -> None:  # noqa: F811
    # yfinance re-sends a refused request once itself (other cookie strategy), then retries the
    # statement in key chunks: four refusals fail our first attempt.
    fake.timeseries_failures = 4

    payload = source.fetch_statements(("AAPL",))

    assert (payload.errors, list(payload.records)) == ({}, ["AAPL"])
    assert payload.provider_calls == 2
    assert len(sleeps) == 1 and sleeps[0] >= BACKOFF.rate_limit_floor_seconds
