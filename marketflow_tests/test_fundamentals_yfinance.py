"""YFinanceFundamentals through yfinance's own request and parsing code, offline.

The fake HTTP layer is the price adapter tests' (`FakeYahoo`: curl_cffi's `Session.request`
answers from fixtures/yahoo); here it also serves the fundamentals-timeseries endpoint (only the
types a request names, as Yahoo does; a request without types is the shares-outstanding series),
the earnings-calendar page yfinance scrapes and quoteSummary's `secFilings` module.
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
from marketflow_tests.helpers import silver_facts
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
QUOTE_SUMMARY = "/v10/finance/quoteSummary/"


@dataclass
class FakeYahooFundamentals(FakeYahoo):
    timeseries_failures: int = 0  # the next N timeseries requests get HTTP 429
    listed_in_us: bool = True  # False: no SEC filings and no shares series, as for many listings

    def request(self, method: str, url: str, params=None, **kwargs):
        parts = urlsplit(url)
        if parts.path.startswith(TIMESERIES) or parts.path == "/calendar/earnings":
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            self.requests.append((parts.path, {**query, **dict(params or {})}))
            return _response(url, *self._fundamentals(parts.path, query))
        if parts.path.startswith(QUOTE_SUMMARY) and (params or {}).get("modules") == "secFilings":
            self.requests.append((parts.path, dict(params)))
            return _response(url, *self._filings(parts.path.rsplit("/", 1)[-1]))
        return super().request(method, url, params, **kwargs)

    def _filings(self, symbol: str) -> tuple[int, str]:
        fixture = FIXTURES / f"quoteSummary_{symbol}_secFilings.json"
        if fixture.exists() and self.listed_in_us:
            return 200, fixture.read_text()
        # A listing without SEC filings: Yahoo answers the module with nothing in it.
        return 200, json.dumps({"quoteSummary": {"result": [{}], "error": None}})

    def _fundamentals(self, path: str, query: dict) -> tuple[int, str]:
        symbol = path.rsplit("/", 1)[-1] if path.startswith(TIMESERIES) else query["symbol"]
        if path == "/calendar/earnings":
            page = FIXTURES / f"earnings_{symbol}.html"
            return (200, page.read_text()) if page.exists() else (200, "<html></html>")
        if self.timeseries_failures:
            self.timeseries_failures -= 1
            return RATE_LIMITED
        if "type" not in query:  # Ticker.get_shares_full: the shares_out series
            shares = FIXTURES / f"timeseries_{symbol}_shares.json"
            if shares.exists() and self.listed_in_us:
                return 200, shares.read_text()
            empty = {"meta": {"symbol": [symbol], "type": ["shares_out"]}}
            return 200, json.dumps({"timeseries": {"result": [empty], "error": None}})
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
    assert doc["sec_filings"][:2] == [
        {"date": "2024-02-02", "form": "10-Q"},
        {"date": "2023-11-03", "form": "10-K"},
    ]  # the 8-K of 2023-11-02 is not a periodic report
    assert doc["shares"]["2023-10-20"] == 15_552_752_000
    # One request per statement and frequency, one for the earnings calendar, the filings and
    # the shares series; none per period.
    paths = [p for p, _ in fake.requests if p.startswith((TIMESERIES, "/calendar", QUOTE_SUMMARY))]
    assert len(paths) == 9
    json.dumps(payload.records, allow_nan=False)


def documents(record: dict, ticker: str = "AAPL") -> pd.DataFrame:
    """One fetched document as bronze reads it from raw."""
    return pd.DataFrame(
        {
            "ticker": [ticker],
            "record": [json.dumps(record)],
            "_source": ["yfinance"],
            "_fetch_id": ["f1"],
            "_fetched_at": [pd.Timestamp("2024-02-10", tz="UTC")],
            "_object_key": ["raw/yfinance/financial_statements/x.json"],
        }
    )


def test_bronze_rows_take_the_release_after_each_period_end(source) -> None:
    payload = source.fetch_statements(("AAPL",))

    rows = statement_rows(documents(payload.records["AAPL"]))
    rows = rows.set_index(["period_type", "period_end", "line_item"])

    fy23 = rows.loc[("annual", pd.Timestamp("2023-09-30"), "NetIncome")]
    assert (fy23["value"], fy23["reported_at"]) == (96_995_000_000, pd.Timestamp("2023-11-02"))
    assert fy23["reported_via"] == "earnings_date"
    q1 = rows.loc[("quarterly", pd.Timestamp("2023-12-31"), "TotalRevenue")]
    assert q1["reported_at"] == pd.Timestamp("2024-02-01")
    fy22 = rows.loc[("annual", pd.Timestamp("2022-09-30"), "NetIncome")]
    assert fy22["reported_at"] == pd.Timestamp("2022-10-27")  # Apple's release of 2022-10-27
    # No release listed for fiscal 2021: the 10-K Yahoo lists (filed 2021-10-29) dates it.
    fy21 = rows.loc[("annual", pd.Timestamp("2021-09-30"), "NetIncome")]
    assert (fy21["reported_at"], fy21["reported_via"], fy21["form"]) == (
        pd.Timestamp("2021-10-29"),
        "sec_filing",
        "10-K",
    )
    count = rows.loc[("instant", pd.Timestamp("2023-10-20"), "SharesOutstanding")]
    assert (count["statement"], count["value"]) == ("shares", 15_552_752_000)
    assert pd.isna(count["reported_at"])  # known_at: its as-of date + the documented lag


def test_silver_dates_each_period_by_release_then_filing_then_lag(source) -> None:
    payload = source.fetch_statements(("AAPL",))

    facts = silver_facts(statement_rows(documents(payload.records["AAPL"])))

    rules = facts.set_index(["period_type", "period_end", "line_item"])
    fy23 = rules.loc[("annual", pd.Timestamp("2023-09-30"), "NetIncome")]
    assert (fy23["known_at_rule"], fy23["known_at"]) == (
        "earnings_date+1d",
        pd.Timestamp("2023-11-03"),
    )
    fy21 = rules.loc[("annual", pd.Timestamp("2021-09-30"), "NetIncome")]
    assert (fy21["known_at_rule"], fy21["known_at"], fy21["form"]) == (
        "sec_filing+1d",
        pd.Timestamp("2021-10-30"),
        "10-K",
    )
    count = rules.loc[("instant", pd.Timestamp("2023-10-20"), "SharesOutstanding")]
    assert (count["known_at_rule"], count["known_at"]) == ("as_of+30d", pd.Timestamp("2023-11-19"))


def test_a_listing_without_filings_or_share_history_keeps_its_statements(source, fake) -> None:
    fake.listed_in_us = False

    payload = source.fetch_statements(("AAPL",))

    doc = payload.records["AAPL"]
    assert (doc["sec_filings"], doc["shares"], payload.errors) == ([], {}, {})
    rows = statement_rows(documents(doc))
    fy21 = rows[(rows["period_end"] == "2021-09-30") & (rows["line_item"] == "NetIncome")]
    assert fy21["reported_via"].isna().all()  # the period-end lag applies


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
