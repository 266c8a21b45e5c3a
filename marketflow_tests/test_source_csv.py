from __future__ import annotations

import datetime as dt

import pytest

from marketflow_assets.sources.base import BarsQuery, PayloadFormatError
from marketflow_assets.sources.csv_files import CsvSource

GOOD = """Date,Open,High,Low,Close,Adj Close,Volume
2024-06-03,10.0,10.5,9.9,10.2,10.1,1000
2024-06-04,10.2,10.4,10.0,10.3,10.2,1100
2024-06-05,10.3,10.9,10.3,10.8,10.7,900
"""


def query(*tickers: str) -> BarsQuery:
    return BarsQuery(tickers, dt.date(2024, 6, 4), dt.date(2024, 6, 5))


def test_rows_in_range_are_served_as_text(tmp_path):
    (tmp_path / "ABC.csv").write_text(GOOD)
    payload = CsvSource(tmp_path).fetch_bars(query("ABC"))
    assert list(payload.frame["Date"]) == ["2024-06-04", "2024-06-05"]
    assert payload.frame["Close"].tolist() == ["10.3", "10.8"]  # unchanged text
    assert payload.fetched_at.tzinfo is not None and not payload.errors


def test_missing_file_is_reported_by_ticker(tmp_path):
    (tmp_path / "ABC.csv").write_text(GOOD)
    payload = CsvSource(tmp_path).fetch_bars(query("ABC", "XYZ"))
    assert "XYZ.csv" in payload.errors["XYZ"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("Date,Open,High,Low,Volume\n2024-06-04,1,1,1,1\n", r"missing column\(s\) Close"),
        (
            "Date,Open,High,Low,Close,Volume\n06/04/2024,1,1,1,1,1\n",
            "line 2, field Date: '06/04/2024'",
        ),
        ("", "not a readable CSV"),
    ],
)
def test_malformed_files_name_the_file(tmp_path, content, message):
    (tmp_path / "BAD.csv").write_text(content)
    (tmp_path / "ABC.csv").write_text(GOOD)
    with pytest.raises(PayloadFormatError, match=message) as info:
        CsvSource(tmp_path).read_file("BAD")
    assert "BAD.csv" in str(info.value)
    # In a fetch it is that ticker's failure; the other tickers are served.
    payload = CsvSource(tmp_path).fetch_bars(query("BAD", "ABC"))
    assert payload.errors["BAD"] == str(info.value)
    assert payload.tickers_with_data == ["ABC"]


def test_a_corrected_file_wins_whatever_its_modification_time(tmp_path):
    """The fetch time is the read time: a corrected copy with an older mtime (cp -p, a restore)
    is a later fetch than the earlier read of the wrong file."""
    import os

    path = tmp_path / "ABC.csv"
    path.write_text(GOOD.replace("10.3,10.2,1100", "99.0,10.2,1100"))
    first = CsvSource(tmp_path).fetch_bars(query("ABC"))
    path.write_text(GOOD)
    os.utime(path, (0, 946684800))  # 2000-01-01
    second = CsvSource(tmp_path).fetch_bars(query("ABC"))
    assert second.fetched_at > first.fetched_at
    assert second.request["files"]["ABC"]["modified_at"].startswith("2000-01-01")
    assert second.request["files"]["ABC"]["sha256"] != first.request["files"]["ABC"]["sha256"]


def test_a_weekly_export_is_refused_but_a_short_sparse_daily_file_is_served(tmp_path):
    header = "Date,Open,High,Low,Close,Volume\n"
    mondays = [dt.date(2024, 5, 6) + dt.timedelta(weeks=w) for w in range(8)]
    (tmp_path / "WK.csv").write_text(header + "".join(f"{d},1,1,1,1,1\n" for d in mondays))
    with pytest.raises(PayloadFormatError, match=r"WK\.csv, line 2.*weekly or monthly export"):
        CsvSource(tmp_path).read_file("WK")
    # an illiquid line with a few trades weeks apart is still a daily file
    (tmp_path / "THIN.csv").write_text(header + "".join(f"{d},1,1,1,1,1\n" for d in mondays[:4]))
    assert len(CsvSource(tmp_path).read_file("THIN")[0]) == 4
