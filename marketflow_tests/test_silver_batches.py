"""A range run validates bronze daily bars in batches of whole tickers: the batches give exactly
the rows one pass gives (accepted and repaired, rejected, repair log)."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd
import pytest

from marketflow_assets.sources.simulator import SimulatorFaults
from marketflow_assets.transforms.repairs import RepairSwitches
from marketflow_assets.transforms.silver_validation import (
    validate_daily_bars,
    validate_daily_bars_in_batches,
)
from marketflow_tests.helpers import simulated_bronze_warehouse, sorted_validated

CLOCK = dt.datetime(2024, 6, 7, 22, 0, tzinfo=dt.UTC)
START, END = dt.date(2023, 6, 1), dt.date(2024, 6, 7)
TICKERS = ("AAPL", "MSFT", "AZN.L", "7203.T", "SHOP.TO", "B0001", "B0002", "B0003")


@pytest.fixture(scope="module")
def warehouse() -> duckdb.DuckDBPyConnection:
    """Bronze daily bars of eight tickers on four exchanges with duplicates, bad ticks and
    100x prices, and their corporate actions."""
    faults = SimulatorFaults(duplicates=0.01, bad_ticks=0.005, price_100x=0.005)
    con = simulated_bronze_warehouse(TICKERS, START - dt.timedelta(days=200), END, CLOCK, faults)
    yield con
    con.close()


@pytest.mark.parametrize("tickers", [None, ["AZN.L", "B0002", "7203.T"]])
def test_batches_of_whole_tickers_give_the_rows_of_one_pass(warehouse, tickers):
    switches = RepairSwitches()
    whole = validate_daily_bars(warehouse, START, END, tickers, switches)
    batches = list(
        validate_daily_bars_in_batches(warehouse, START, END, tickers, switches, batch_rows=300)
    )
    expected_tickers = len(tickers) if tickers else len(TICKERS)
    # ~260 bars per ticker and 300 rows per batch: a ticker or two per batch, never split
    assert len(batches) >= expected_tickers // 2
    seen = [set(b.bars["ticker"]) for b in batches]
    assert all(not (a & b) for i, a in enumerate(seen) for b in seen[i + 1 :])
    for name in ("bars", "rejected", "repairs"):
        one = getattr(whole, name)
        parts = pd.concat(
            [getattr(b, name) for b in batches if not getattr(b, name).empty], ignore_index=True
        )
        pd.testing.assert_frame_equal(
            sorted_validated(parts, name), sorted_validated(one, name), check_dtype=False
        )
    # the faults were there to repair and reject, and the scope was kept
    assert len(whole.rejected) > 0 and len(whole.repairs) > 0
    assert set(whole.bars["ticker"]) == set(tickers or TICKERS)
    assert whole.bars["session_date"].between(pd.Timestamp(START), pd.Timestamp(END)).all()


def test_no_bronze_rows_in_scope_gives_no_batches(warehouse):
    assert (
        list(
            validate_daily_bars_in_batches(
                warehouse, START, END, ["NOPE"], RepairSwitches(), batch_rows=300
            )
        )
        == []
    )


def test_every_bar_is_accepted_or_rejected_once(warehouse):
    batches = list(
        validate_daily_bars_in_batches(
            warehouse, START, END, None, RepairSwitches(), batch_rows=500
        )
    )
    accepted = sum(len(b.bars) for b in batches)
    rejected = sum(len(b.rejected) for b in batches)
    bronze = warehouse.execute(
        "SELECT count(*) FROM bronze.daily_bars WHERE session_date BETWEEN ? AND ?", [START, END]
    ).fetchone()[0]
    assert accepted + rejected == bronze
    assert np.isfinite(pd.concat([b.bars for b in batches])["adj_close"]).all()
