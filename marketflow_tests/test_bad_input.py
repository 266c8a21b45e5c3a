"""Bad input through the real pipeline: every rejection reason lands intact with its reason;
unreadable input fails with the file or ticker named."""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np
import pandas as pd
import pytest

from marketflow_tests.automation_support import tick_sensor
from marketflow_tests.checks_support import DAILY
from marketflow_tests.helpers import deployment_event_log_instance, materialize, query, table

# One good week of BAD.csv, then one row per rejection reason.
CSV = """Date,Open,High,Low,Close,Adj Close,Volume,Dividends,Stock Splits
2024-06-03,10.00,10.50,9.90,10.20,10.20,1000,0,0
2024-06-04,10.20,10.40,10.00,10.30,10.30,1100,0,0
2024-06-05,10.30,10.90,10.30,10.80,10.80,900,0,0
2024-06-05,10.30,10.90,10.30,10.80,10.80,900,0,0
2024-06-06,10.80,11.00,10.60,,10.70,800,0,0
2024-06-07,10.70,10.60,10.80,10.75,10.75,700,0,0
2024-06-08,10.70,10.90,10.60,10.75,10.75,10,0,0
2024-06-10,15.00,11.00,10.50,10.90,10.90,600,0,0
2024-06-11,10.90,11.20,10.80,14.30,14.30,500,0,0
2024-06-12,10.90,11.20,-10.80,11.00,11.00,500,0,0
2024-06-13,10.90,11.20,10.80,11.00,11.00,-5,0,0
2024-06-14,11.00,11.10,10.90,11.05,11.05,400,0,0
2024-06-14,11.00,11.10,10.90,11.07,11.07,400,0,0
"""
EXPECTED = {
    ("2024-06-05", "duplicate"),
    ("2024-06-06", "missing_value"),
    ("2024-06-07", "high_below_low"),
    ("2024-06-07", "non_session_date"),  # the Saturday bar belongs to Friday's partition
    ("2024-06-10", "open_outside_range"),  # beyond the 25% an auction print is widened by
    ("2024-06-11", "close_outside_range"),
    ("2024-06-12", "non_positive_price"),
    ("2024-06-13", "negative_volume"),
    ("2024-06-14", "conflicting_duplicate"),
}


@pytest.fixture
def csv_settings(settings, tmp_path):
    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "BAD.csv").write_text(CSV)
    return dataclasses.replace(
        settings, source="csv", csv_dir=folder, tickers="BAD", simulator_now=None
    )


def test_every_rejection_reason_lands_with_the_row_intact(csv_settings):
    materialize(csv_settings, select=DAILY, partition_range=("2024-06-03", "2024-06-14"))
    rejected = table(csv_settings, "silver.rejected_bars", "session_date, reason")
    got = {
        (d.strftime("%Y-%m-%d"), r)
        for d, r in zip(rejected["session_date"], rejected["reason"], strict=True)
    }
    assert got == EXPECTED | {("2024-06-14", "conflicting_duplicate")}
    assert (rejected["reason"] == "conflicting_duplicate").sum() == 2  # both disagreeing copies
    negative = rejected.set_index("reason").loc["negative_volume"]
    assert (
        negative["open"],
        negative["high"],
        negative["low"],
        negative["close"],
        negative["volume"],
    ) == (10.9, 11.2, 10.8, 11.0, -5.0)
    assert negative["raw_object"].startswith("raw/csv/daily_bars/date=2024-06-13/")
    assert rejected["detail"].notna().all()
    assert "Saturday" in rejected.set_index("reason").loc["non_session_date", "detail"]

    accepted = table(csv_settings, "silver.daily_bars", "session_date")
    assert [d.strftime("%m-%d") for d in accepted["session_date"]] == ["06-03", "06-04", "06-05"]
    # Nothing is lost: bronze rows = silver rows + rejected rows.
    bronze = query(csv_settings, "SELECT count(*) AS n FROM bronze.daily_bars")["n"][0]
    assert bronze == len(accepted) + len(rejected)


def test_csv_without_action_columns_takes_factors_from_adj_close(settings, tmp_path):
    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "DIV.csv").write_text(
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        "2024-06-03,100,101,99,100,98,10\n"
        "2024-06-04,100,102,99,101,99,10\n"
        "2024-06-05,99,100,98,99,99,10\n"
    )
    csv = dataclasses.replace(
        settings, source="csv", csv_dir=folder, tickers="DIV", simulator_now=None
    )
    materialize(csv, select=DAILY, partition_range=("2024-06-03", "2024-06-05"))
    bars = table(csv, "silver.daily_bars", "session_date")
    np.testing.assert_allclose(bars["adj_close"], [98, 99, 99], rtol=1e-12)
    np.testing.assert_allclose(bars["adj_open"], [98, 100 * 99 / 101, 99], rtol=1e-12)
    assert bars["close"].tolist() == [100, 101, 99]


def test_malformed_csv_fails_naming_the_file(settings, tmp_path):
    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "BROKEN.csv").write_text("Date,Open,High\n2024-06-03,1,2\n")
    csv = dataclasses.replace(
        settings, source="csv", csv_dir=folder, tickers="BROKEN", simulator_now=None
    )
    result = materialize(
        csv, select=["raw/daily_bars"], partition="2024-06-03", raise_on_error=False
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "BROKEN.csv" in str(failure.event_specific_data.error) and "Close" in str(
        failure.event_specific_data.error
    )


def test_invalid_ticker_in_the_universe_is_named(settings):
    bad = dataclasses.replace(settings, tickers="AAPL,NOT A TICKER")
    result = materialize(
        bad, select=["raw/daily_bars"], partition="2024-06-03", raise_on_error=False
    )
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "NOT A TICKER" in str(failure.event_specific_data.error)


def test_simulator_faults_land_in_rejected_bars(settings):
    faulty = dataclasses.replace(settings, simulator_faults="duplicates=0.05,bad_ticks=0.05")
    materialize(faulty, select=DAILY, partition_range=("2024-01-02", "2024-06-07"))
    reasons = set(table(faulty, "silver.rejected_bars")["reason"])
    assert "duplicate" in reasons
    assert reasons & {
        "high_below_low",
        "non_positive_price",
        "missing_value",
        "open_outside_range",
        "close_outside_range",
    }
    counts = query(
        faulty,
        "SELECT (SELECT count(*) FROM bronze.daily_bars) AS bronze, (SELECT count(*) FROM silver.daily_bars) AS silver,"
        " (SELECT count(*) FROM silver.rejected_bars) AS rejected",
    ).iloc[0]
    assert counts["bronze"] == counts["silver"] + counts["rejected"]
    pd.testing.assert_series_equal(
        table(faulty, "silver.daily_bars")
        .groupby(["ticker", "session_date"])
        .size()
        .value_counts(),
        pd.Series({1: counts["silver"]}, name="count"),
        check_names=False,
        check_index_type=False,
    )


def test_absurd_numbers_are_quarantined_and_one_bad_file_fails_only_its_ticker(settings, tmp_path):
    """inf, 1e308, 1e20 and fractional volumes go to rejected_bars with a reason (no numpy or
    BIGINT crash); a file with a trailing-text date fails its ticker, naming file, line and
    field, and the other tickers of the run land."""
    folder = tmp_path / "csv"
    folder.mkdir()
    header = "Date,Open,High,Low,Close,Adj Close,Volume\n"
    (folder / "NUM.csv").write_text(
        header + "2024-06-03,10,inf,9,10,10,100\n"
        "2024-06-04,10,11,9,10,10,1e20\n"
        "2024-06-05,10,1e308,9,10,10,100\n"
        "2024-06-06,10,11,9,10,10,100.5\n"
        "2024-06-07,10,11,9,10,10,100\n"
    )
    (folder / "DATE.csv").write_text(
        header + "2024-06-03,10,11,9,10,10,100\n2024-06-04 (holiday?),10,11,9,10,10,100\n"
    )
    csv = dataclasses.replace(
        settings, source="csv", csv_dir=folder, tickers="NUM,DATE", simulator_now=None
    )
    result = materialize(csv, select=DAILY, partition_range=("2024-06-03", "2024-06-07"))
    raw = result.asset_materializations_for_node("raw__daily_bars")[0].metadata
    assert re.search(r"DATE\.csv, line 3, field Date: '2024-06-04 \(holiday\?\)'", str(raw))
    rejected = table(csv, "silver.rejected_bars", "session_date")
    assert rejected["reason"].tolist() == [
        "non_finite_value",
        "volume_out_of_range",
        "price_out_of_range",
        "fractional_volume",
    ]
    assert rejected["detail"].str.contains("high|volume|price").all()
    accepted = table(csv, "silver.daily_bars", "session_date")
    assert accepted[["ticker", "volume"]].values.tolist() == [["NUM", 100]]
    bronze = query(csv, "SELECT count(*) AS n FROM bronze.daily_bars")["n"][0]
    assert bronze == len(accepted) + len(rejected) == 5


def test_a_corrected_csv_with_an_older_mtime_wins(settings, tmp_path):
    folder = tmp_path / "csv"
    folder.mkdir()
    path = folder / "FIX.csv"
    path.write_text("Date,Open,High,Low,Close,Adj Close,Volume\n2024-06-03,10,11,9,10.5,10.5,100\n")
    csv = dataclasses.replace(
        settings, source="csv", csv_dir=folder, tickers="FIX", simulator_now=None
    )
    materialize(csv, select=DAILY, partition="2024-06-03")
    # The corrected copy keeps the export's old modification time (cp -p, a restore).
    path.write_text("Date,Open,High,Low,Close,Adj Close,Volume\n2024-06-03,10,11,9,10.9,10.9,100\n")
    os.utime(path, (1_700_000_000, 1_700_000_000))  # 2023-11-14
    refresh = {"ops": {"raw__daily_bars": {"config": {"refresh": True}}}}
    materialize(csv, select=DAILY, partition="2024-06-03", run_config=refresh)
    assert table(csv, "silver.daily_bars")["close"].tolist() == [10.9]


def test_a_drop_with_a_trailing_text_date_is_rejected_naming_line_and_field(settings):
    """It used to pass the drop parser, become NaT and vanish: in neither bronze, silver nor
    rejected_bars."""
    landing = settings.home / "landing"
    landing.mkdir(parents=True)
    (landing / "MSFT.csv").write_text(
        "Date,Open,High,Low,Close,Volume\n"
        "2024-06-03,10,11,9,10,100\n"
        "2024-06-04 (holiday?),10,11,9,10,100\n"
    )
    with deployment_event_log_instance() as instance:
        result = tick_sensor(settings, "file_drops", instance)
    assert result.run_requests == []
    (reason,) = (landing / "rejected").rglob("MSFT.csv.reason.txt")
    assert "landing/MSFT.csv, line 3, field Date: '2024-06-04 (holiday?)'" in reason.read_text()
    assert len(list((landing / "rejected").rglob("MSFT.csv"))) == 1  # kept beside its reason
