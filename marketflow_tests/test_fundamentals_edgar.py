"""EdgarSource against a real HTTP server on loopback serving fixtures in EDGAR's format
(fixtures/edgar, see its README): User-Agent from configuration, CIK lookup, retries, and what
bronze and silver make of company facts (filing dates as known_at, amendments as versions)."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from marketflow_assets.sources.fundamentals_edgar import EdgarSource
from marketflow_assets.sources.retry import Backoff
from marketflow_assets.transforms.fundamentals import statement_rows
from marketflow_tests.helpers import silver_facts

FIXTURES = Path(__file__).parent / "fixtures" / "edgar"
AGENT = "MarketFlow tests quant@example.com"
APPLE = "/api/xbrl/companyfacts/CIK0000320193.json"


class FakeEdgar(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.agents: list[str] = []
        self.paths: list[str] = []
        self.refusals: dict[str, int] = {}  # path -> how many more 429s

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: FakeEdgar

    def do_GET(self) -> None:
        self.server.agents.append(self.headers.get("User-Agent", ""))
        self.server.paths.append(self.path)
        if self.server.refusals.get(self.path):
            self.server.refusals[self.path] -= 1
            return self._send(429, b'{"message": "Request rate threshold exceeded"}')
        name = {
            "/files/company_tickers.json": "company_tickers.json",
            APPLE: "companyfacts_CIK0000320193.json",
        }.get(self.path)
        if name is None:
            return self._send(404, b"<Error><Code>NoSuchKey</Code></Error>")
        self._send(200, (FIXTURES / name).read_bytes())

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def edgar() -> Iterator[FakeEdgar]:
    server = FakeEdgar()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def sleeps() -> list[float]:
    return []


def source(edgar: FakeEdgar, sleeps: list[float]) -> EdgarSource:
    return EdgarSource(
        user_agent=AGENT,
        base_url=edgar.url,
        tickers_url=f"{edgar.url}/files/company_tickers.json",
        backoff=Backoff(attempts=3, base_seconds=1.0),
        sleep=sleeps.append,
        min_interval_seconds=0.0,
    )


def test_company_facts_are_landed_unchanged_with_the_configured_user_agent(edgar, sleeps):
    payload = source(edgar, sleeps).fetch_statements(("AAPL", "MSFT", "NOPE"))

    assert payload.records["AAPL"] == json.loads(
        (FIXTURES / "companyfacts_CIK0000320193.json").read_text()
    )
    assert "HTTP 404" in payload.errors["MSFT"]  # a CIK without company facts
    assert payload.errors["NOPE"] == "NOPE has no CIK in the SEC's company_tickers.json"
    assert set(edgar.agents) == {AGENT}
    assert edgar.paths.count("/files/company_tickers.json") == 1
    assert sleeps == []


def test_rate_limit_is_retried_then_reported(edgar, sleeps):
    edgar.refusals[APPLE] = 1
    payload = source(edgar, sleeps).fetch_statements(("AAPL",))
    assert (list(payload.records), payload.errors, len(sleeps)) == (["AAPL"], {}, 1)

    edgar.refusals[APPLE] = 99
    payload = source(edgar, sleeps).fetch_statements(("AAPL", "MSFT"))
    assert "HTTP 429" in payload.errors["AAPL"]
    assert payload.errors["MSFT"].startswith("not attempted: stopped after AAPL failed")


def test_a_user_agent_without_contact_is_refused():
    with pytest.raises(ValueError, match="e-mail address"):
        EdgarSource(user_agent="python-urllib")


def documents(*facts: dict) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ticker": "AAPL",
            "record": [json.dumps(f) for f in facts],
            "_source": "edgar",
            "_fetch_id": [f"f{i}" for i in range(len(facts))],
            "_fetched_at": [
                pd.Timestamp("2024-03-01", tz="UTC") + pd.Timedelta(days=i)
                for i in range(len(facts))
            ],
            "_object_key": "raw/edgar/financial_statements/x.json",
        }
    )


def test_filing_dates_become_known_at_and_comparatives_are_not_versions():
    facts = json.loads((FIXTURES / "companyfacts_CIK0000320193.json").read_text())
    bronze = statement_rows(documents(facts))

    # Quarters and fiscal years only: the 9-month year-to-date revenue is left out.
    revenue = bronze[bronze["line_item"] == "TotalRevenue"]
    assert sorted(revenue["value"].unique()) == [81797e6, 119575e6, 383285e6, 394328e6]
    capex = bronze[bronze["line_item"] == "CapitalExpenditure"]["value"].tolist()
    assert capex == [-10959e6]  # a payment is a negative cash flow, as Yahoo gives it

    facts_ = silver_facts(bronze).set_index(["line_item", "period_type", "period_end"])
    fy22 = facts_.loc[("TotalRevenue", "annual", pd.Timestamp("2022-09-24"))]
    # Reported again as a comparative in the 2023 10-K, unchanged: one version, known from 2022.
    assert (fy22["version"], fy22["known_at"], fy22["known_at_rule"]) == (
        1,
        pd.Timestamp("2022-10-29"),
        "sec_filed+1d",
    )
    q = facts_.loc[("TotalRevenue", "quarterly", pd.Timestamp("2023-12-30"))]
    assert (q["value"], q["known_at"], q["form"]) == (119575e6, pd.Timestamp("2024-02-03"), "10-Q")


def test_an_amendment_is_a_new_version_known_from_its_filing():
    facts = json.loads((FIXTURES / "companyfacts_CIK0000320193.json").read_text())
    amended = copy.deepcopy(facts)
    # A (made-up) 10-K/A filed 2024-01-16 restating fiscal 2023 net income.
    amended["facts"]["us-gaap"]["NetIncomeLoss"]["units"]["USD"].append(
        {"start": "2022-09-25", "end": "2023-09-30", "val": 95000000000, "accn": "0000320193-24-000001",
         "fy": 2023, "fp": "FY", "form": "10-K/A", "filed": "2024-01-16"}
    )  # fmt: skip

    versions = silver_facts(statement_rows(documents(facts, amended)))
    ni = versions[
        (versions["line_item"] == "NetIncome")
        & (versions["period_end"] == pd.Timestamp("2023-09-30"))
    ].sort_values("version")
    assert ni[["version", "value", "known_at", "form"]].values.tolist() == [
        [1, 96995e6, pd.Timestamp("2023-11-04"), "10-K"],
        [2, 95000e6, pd.Timestamp("2024-01-17"), "10-K/A"],
    ]
    assert ni["superseded_at"].iloc[0] == ni["first_seen_at"].iloc[1]
    assert pd.isna(ni["superseded_at"].iloc[1])
