"""Bronze statements read every document of a fetch in one pass: a bad document among many still
fails the batch naming its ticker, fetch and raw object, and NaN/Infinity in the provider's
JSON are read as Python reads them (NaN dropped, Infinity kept)."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from marketflow_assets.sources.fundamentals import YAHOO_FORMAT
from marketflow_assets.transforms.fundamentals import StatementFormatError, statement_rows

FETCHED = dt.datetime(2024, 6, 7, 22, tzinfo=dt.UTC)


def yahoo(revenue=100.0, period_end="2024-03-31", release="2024-04-25T16:30:00-04:00") -> dict:
    return {
        "format": YAHOO_FORMAT,
        "currency": "USD",
        "income": {
            "quarterly": {period_end: {"TotalRevenue": revenue, "NetIncome": float("nan")}},
            "annual": {"2023-12-31": {"TotalRevenue": 400.0}},
        },
        "balance": {"quarterly": {period_end: {"TotalAssets": float("inf")}}},
        "cashflow": {},
        "earnings_dates": [release, "2024-01-30T16:30:00-05:00"],
        "sec_filings": [
            {"date": "2024-05-02", "form": "10-Q"},
            {"date": "2024-02-02", "form": "10-K"},
        ],
        "shares": {"2024-03-31": 1000.0},
    }


def documents(records: dict[str, dict | str]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "ticker": ticker,
                "record": record if isinstance(record, str) else json.dumps(record),
                "_source": "yfinance",
                "_fetch_id": f"fetch-{ticker}",
                "_fetched_at": FETCHED,
                "_object_key": f"raw/{ticker}.jsonl",
            }
            for ticker, record in records.items()
        ]
    )


def test_every_document_is_read_with_its_own_releases_and_filings():
    late = yahoo(revenue=7.0, release="2024-05-20T16:30:00-04:00")
    late["sec_filings"] = []
    rows = statement_rows(documents({"AAA": yahoo(), "BBB": late, "CCC": yahoo(revenue=3.0)}))
    quarter = rows[(rows["line_item"] == "TotalRevenue") & (rows["period_type"] == "quarterly")]
    by_ticker = quarter.set_index("ticker")
    assert by_ticker["value"].to_dict() == {"AAA": 100.0, "BBB": 7.0, "CCC": 3.0}
    # each document's own earnings calendar dates its periods
    assert by_ticker.loc["AAA", "reported_at"] == pd.Timestamp("2024-04-25")
    assert by_ticker.loc["BBB", "reported_at"] == pd.Timestamp("2024-05-20")
    # the annual period: the first release after its end (the January one), per document
    annual = rows[(rows["period_type"] == "annual")].set_index("ticker")
    assert (annual["reported_at"] == pd.Timestamp("2024-01-30")).all()
    assert set(rows["reported_via"].dropna()) == {"earnings_date"}
    # NaN values are dropped, Infinity kept as the provider sent it; share counts per ticker
    assert not (rows["line_item"] == "NetIncome").any()
    assert (rows.loc[rows["line_item"] == "TotalAssets", "value"] == float("inf")).all()
    assert rows[rows["statement"] == "shares"]["ticker"].tolist() == ["AAA", "BBB", "CCC"]
    assert rows["raw_object"].tolist() == [f"raw/{t}.jsonl" for t in rows["ticker"]]


def test_a_filing_dates_a_period_without_a_release():
    record = yahoo()
    record["earnings_dates"] = []
    rows = statement_rows(documents({"AAA": record}))
    quarter = rows[(rows["line_item"] == "TotalRevenue") & (rows["period_type"] == "quarterly")]
    assert quarter["reported_via"].tolist() == ["sec_filing"]
    assert quarter["form"].tolist() == ["10-Q"]
    assert quarter["reported_at"].tolist() == [pd.Timestamp("2024-05-02")]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (yahoo(revenue="lots"), "value 'lots' does not parse"),
        (yahoo(period_end="end of March"), "period end 'end of March' does not parse"),
        (yahoo(release="soon"), "earnings date 'soon' does not parse"),
        ({**yahoo(), "income": ["not", "tables"]}, "AttributeError"),
        ({**yahoo(), "sec_filings": [{"form": "10-Q"}]}, "KeyError"),
        ({**yahoo(), "shares": {"2024-03-31": "many"}}, "share count 'many' does not parse"),
        ({"format": "other/1"}, "unknown statements format 'other/1'"),
        ("{not json", "JSONDecodeError"),
        ({"facts": {"us-gaap": {"Revenues": {"units": {"USD": "x"}}}}}, "TypeError"),
        (
            {"facts": {"us-gaap": {"Revenues": {"units": {"USD": [{"end": "2024-03-31"}]}}}}},
            "KeyError: 'val'",
        ),
    ],
)
def test_a_bad_document_among_good_ones_is_named(bad, message):
    with pytest.raises(StatementFormatError) as failure:
        statement_rows(documents({"AAA": yahoo(), "BAD": bad, "CCC": yahoo()}))
    text = str(failure.value)
    assert text.startswith("BAD: statements of fetch fetch-BAD (raw/BAD.jsonl) are unreadable")
    assert message in text
