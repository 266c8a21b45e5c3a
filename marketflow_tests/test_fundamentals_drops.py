"""Dropped statement files (the documented long format): checked at pick-up with the bronze
rules, rejected whole naming file, line and field, or claimed as their own batch whose run lands
them in raw as source 'file' and builds bronze and silver facts (reported_at -> known_at)."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from marketflow_assets.automation.common import AUTOMATION_TAG, RANGE_START_TAG
from marketflow_assets.automation.file_drops import FILE_BATCH_TAG
from marketflow_assets.ingestion.landing import DropRejected, parse_drop
from marketflow_assets.resources import TICKERS_TAG
from marketflow_assets.storage.object_store import LocalObjectStore
from marketflow_assets.storage.raw_lake import RawLake
from marketflow_tests.automation_support import execute_request, tick_sensor
from marketflow_tests.helpers import query
from marketflow_tests.test_automation_file_drops import (  # noqa: F401  (fixtures)
    TODAY,
    drop,
    files_under,
    friday,
    instance,
    yahoo_csv,
)

SENSOR = "file_drops"
STATEMENTS_CSV = """statement,period_type,period_end,line_item,value,currency,reported_at
income,quarterly,2024-03-30,TotalRevenue,90753000000,USD,2024-05-02
income,quarterly,2024-03-30,NetIncome,23636000000,USD,2024-05-02
balance,quarterly,2024-03-30,StockholdersEquity,74194000000,USD,
"""


def json_statements(ticker: str) -> str:
    rows = pd.read_csv(io.StringIO(STATEMENTS_CSV), dtype=str, keep_default_na=False)
    return json.dumps({"ticker": ticker, "rows": rows.to_dict("records")})


def test_statement_files_are_told_from_bar_files_and_keep_text_cells():
    csv = parse_drop("landing/AAPL.csv", STATEMENTS_CSV.encode(), today=TODAY)
    doc = parse_drop("landing/vendor/x.json", json_statements("MSFT").encode(), today=TODAY)
    bars = parse_drop("landing/AAPL.csv", yahoo_csv().encode(), today=TODAY)

    assert (csv.kind, csv.tickers, csv.first) == ("statements", ("AAPL",), None)
    assert csv.frame["value"].tolist() == ["90753000000", "23636000000", "74194000000"]
    assert csv.frame["reported_at"].tolist() == ["2024-05-02", "2024-05-02", ""]
    assert (doc.kind, doc.tickers, len(doc.frame)) == ("statements", ("MSFT",), 3)
    assert bars.kind == "bars"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (
            STATEMENTS_CSV.replace("quarterly,2024-03-30,NetIncome", "weekly,2024-03-30,NetIncome"),
            r"landing/AAPL\.csv, line 3, field period_type: 'weekly' is not annual\|quarterly",
        ),
        (
            STATEMENTS_CSV.replace("23636000000", "23.6bn"),
            r"landing/AAPL\.csv, line 3, field value: '23\.6bn' is not a number",
        ),
        (
            STATEMENTS_CSV.replace("74194000000,USD,", "74194000000,USD,May 2"),
            r"line 4, field reported_at: 'May 2' is not a date",
        ),
        (
            "statement,line_item,value\nincome,NetIncome,1\n",
            r"landing/AAPL\.csv: missing column\(s\) period_type, period_end",
        ),
    ],
)
def test_a_bad_statements_file_is_rejected_naming_file_line_and_field(content, reason):
    with pytest.raises(DropRejected, match=reason):
        parse_drop("landing/AAPL.csv", content.encode(), today=TODAY)


def test_dropped_statements_become_facts_known_from_reported_at(friday, instance):  # noqa: F811
    drop(friday, "AAPL.csv", STATEMENTS_CSV)
    drop(friday, "vendor/msft.json", json_statements("MSFT"))
    drop(friday, "bad.csv", STATEMENTS_CSV.replace("23636000000", "n/a"))
    drop(friday, "KO.csv", yahoo_csv())  # bars in the same tick: their own batch and run

    first = tick_sensor(friday, SENSOR, instance)

    by_kind = {
        "statements" if RANGE_START_TAG not in r.tags else "bars": r for r in first.run_requests
    }
    assert set(by_kind) == {"statements", "bars"}
    request = by_kind["statements"]
    batch = request.tags[FILE_BATCH_TAG]
    assert (request.tags[AUTOMATION_TAG], request.tags[TICKERS_TAG]) == ("file_drop", "AAPL,MSFT")
    assert request.run_config == {
        "ops": {"raw__financial_statements": {"config": {"file_batch": batch}}}
    }
    assert {k.to_user_string() for k in request.asset_selection} == {
        "raw/financial_statements",
        "bronze/financial_statements",
        "bronze/statement_documents",
        "silver/financial_facts",
    }
    assert "raw/financial_statements" not in {
        k.to_user_string() for k in by_kind["bars"].asset_selection
    }
    assert files_under(friday, f"claimed/{batch}") == [
        "AAPL.csv",
        "_batch.json",
        "vendor/msft.json",
    ]
    reason = next((friday.home / "landing" / "rejected").rglob("bad.csv.reason.txt")).read_text()
    assert "bad.csv, line 3, field value: 'n/a' is not a number" in reason

    assert execute_request(friday, SENSOR, request, instance=instance).success
    (manifest, *others) = RawLake(LocalObjectStore(friday.lake_root)).manifests(
        "file", "financial_statements"
    )
    assert len(others) == 1 and manifest.source == "file"
    facts = query(
        friday,
        "SELECT ticker, line_item, value, known_at, known_at_rule, source "
        "FROM silver.financial_facts ORDER BY ticker, line_item",
    )
    aapl = facts[facts["ticker"] == "AAPL"].set_index("line_item")
    assert aapl.loc["NetIncome", "value"] == 23_636_000_000
    assert (aapl.loc["NetIncome", "known_at"], aapl.loc["NetIncome", "known_at_rule"]) == (
        pd.Timestamp("2024-05-03"),
        "reported+1d",
    )
    # No reported_at: the quarterly lag (period end + 45 days).
    assert aapl.loc["StockholdersEquity", "known_at"] == pd.Timestamp("2024-05-14")
    assert set(facts["source"]) == {"file"} and set(facts["ticker"]) == {"AAPL", "MSFT"}

    second = tick_sensor(friday, SENSOR, instance, first.cursor)
    assert not second.run_requests and f"batch {batch} landed" in second.skip_message
    assert files_under(friday, f"processed/{batch}") == [
        "AAPL.csv",
        "_batch.json",
        "vendor/msft.json",
    ]
