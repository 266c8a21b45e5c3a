"""The documented CSV/JSON statements format (csv source): typed through bronze and silver, with
`reported_at` as the known_at date, and bad files or cells named in the error."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from marketflow_assets.sources.base import PayloadFormatError
from marketflow_assets.sources.fundamentals_csv import CsvFundamentals
from marketflow_assets.transforms.fundamentals import StatementFormatError, statement_rows

CSV = """statement,period_type,period_end,line_item,value,currency,reported_at
income,quarterly,2024-03-30,TotalRevenue,90753000000,USD,2024-05-02
balance,quarterly,2024-03-30,StockholdersEquity,74194000000,USD,2024-05-02
cashflow,quarterly,2024-03-30,CapitalExpenditure,-1996000000,USD,
"""


def documents(payload) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ticker": list(payload.records),
            "record": [json.dumps(r) for r in payload.records.values()],
            "_source": "csv",
            "_fetch_id": "f1",
            "_fetched_at": pd.Timestamp("2024-06-01", tz="UTC"),
            "_object_key": "raw/csv/financial_statements/x.json",
        }
    )


def test_csv_and_json_files_become_typed_rows(tmp_path):
    (tmp_path / "AAPL.csv").write_text(CSV)
    rows = pd.read_csv(tmp_path / "AAPL.csv", dtype=str, keep_default_na=False)
    (tmp_path / "MSFT.json").write_text(json.dumps(rows.to_dict("records")))

    payload = CsvFundamentals(tmp_path).fetch_statements(("AAPL", "MSFT", "KO"))

    assert payload.errors == {"KO": f"no KO.csv or KO.json in {tmp_path}"}
    bronze = statement_rows(documents(payload))
    assert len(bronze) == 6
    aapl = bronze[bronze["ticker"] == "AAPL"].set_index("line_item")
    assert aapl.loc["TotalRevenue", "value"] == 90_753_000_000
    assert aapl.loc["TotalRevenue", "reported_at"] == pd.Timestamp("2024-05-02")
    assert aapl.loc["TotalRevenue", "reported_via"] == "reported"
    assert pd.isna(aapl.loc["CapitalExpenditure", "reported_at"])  # the period-end lag applies


def test_a_file_without_the_columns_is_refused_by_name(tmp_path):
    (tmp_path / "AAPL.csv").write_text("Date,Open,Close\n2024-01-02,1,2\n")
    with pytest.raises(PayloadFormatError, match=r"AAPL\.csv: missing column\(s\)"):
        CsvFundamentals(tmp_path).fetch_statements(("AAPL",))


def test_a_bad_cell_names_the_ticker_fetch_and_row(tmp_path):
    (tmp_path / "AAPL.csv").write_text(
        CSV.replace(
            "quarterly,2024-03-30,StockholdersEquity", "weekly,2024-03-30,StockholdersEquity"
        )
    )
    payload = CsvFundamentals(tmp_path).fetch_statements(("AAPL",))
    with pytest.raises(
        StatementFormatError,
        match=r"AAPL: statements of fetch f1 .* row 2, field period_type: 'weekly'",
    ):
        statement_rows(documents(payload))


def test_a_csv_folder_without_statements_is_skipped_not_failed(tmp_path):
    assert CsvFundamentals(tmp_path).unavailable() is None
    reason = CsvFundamentals(tmp_path / "fundamentals").unavailable()
    assert reason.startswith(f"no statements folder {tmp_path / 'fundamentals'}")
