"""Silver validation sends through pandas only the bars a repair can touch: the histories of the
tickers `level_suspects_sql` names, and the other tickers' bars outside their range. Routing
must never change a row: every other ticker's bars come out of `repair_bars` as they went in
(but for range widening), and the routed validation equals repairing every ticker."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd
import pytest

from marketflow_assets.sources.simulator import SimulatorFaults
from marketflow_assets.transforms import silver_validation
from marketflow_assets.transforms.repairs import RepairSwitches
from marketflow_assets.transforms.repairs.bars import level_suspects_sql, repair_bars
from marketflow_assets.transforms.silver_validation import validate_daily_bars
from marketflow_tests.helpers import simulated_bronze_warehouse, sorted_validated

CLOCK = dt.datetime(2024, 6, 7, 22, 0, tzinfo=dt.UTC)
START, END = dt.date(2023, 6, 1), dt.date(2024, 6, 7)
TICKERS = ("AAPL", "MSFT", "AZN.L", "7203.T", "SHOP.TO", "B0001", "B0002", "B0003", "B0004")


def _random_histories(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tickers of 60 bars with one jump each (from a few % to 1000x, either way; some back
    again) and, for some, a split of a random ratio near the jump: bars and split actions."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2024-01-02", periods=60)
    bars, actions = [], []
    for n in range(400):
        ticker = f"T{n:03d}"
        log_close = np.cumsum(rng.normal(0, 0.01, len(days))) + np.log(50)
        at = int(rng.integers(1, len(days)))
        jump = rng.uniform(-7, 7) * rng.choice([1.0, 0.3, 0.05])
        log_close[at:] += jump
        if rng.random() < 0.3:  # and straight back
            log_close[at + 1 :] -= jump
        close = np.exp(log_close)
        bars.append(
            pd.DataFrame(
                {
                    "ticker": ticker,
                    "session_date": days,
                    "open": close,
                    "high": close * 1.01,
                    "low": close * 0.99,
                    "close": close,
                    "adj_close": close,
                    "volume": 1000.0,
                    "source": "simulator",
                    "fetch_id": "f1",
                    "fetched_at": pd.Timestamp("2024-06-07 22:00", tz="UTC"),
                    "raw_object": "obj",
                }
            )
        )
        if rng.random() < 0.4:
            ratio = float(np.exp(jump * rng.uniform(0.5, 1.5))) if jump else 2.0
            offset = int(rng.integers(-60, 60))
            actions.append((ticker, days[at] + pd.Timedelta(days=offset), ratio, 1.0))
    frame = pd.concat(bars, ignore_index=True)
    splits = pd.DataFrame(actions, columns=["ticker", "ex_date", "split_ratio", "dividend_factor"])
    return frame, splits


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_ticker_left_out_of_the_suspects_has_nothing_for_a_level_repair_to_find(seed):
    bars, actions = _random_histories(seed)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("bars", bars)
        con.register("actions", actions)
        suspects = {row[0] for row in con.execute(level_suspects_sql("bars", "actions")).fetchall()}
    finally:
        con.close()
    repaired, log, quarantined = repair_bars(bars, actions, RepairSwitches())
    touched = set(log["ticker"]) | set(quarantined["ticker"])
    # the random jumps made both kinds, so the check below is not vacuous
    assert touched and len(suspects) < bars["ticker"].nunique()
    assert touched <= suspects
    clean = ~repaired["ticker"].isin(suspects)
    assert repaired.loc[clean, "repair_reason"].isna().all()


def test_bad_split_ratios_and_two_bars_on_one_session_make_a_ticker_a_suspect():
    bars, _ = _random_histories(0)
    one = bars[bars["ticker"] == "T000"].assign(open=50.0, high=51.0, low=49.0, close=50.0)
    two = one.assign(ticker="T001")
    three = one.assign(ticker="T002")
    twice = pd.concat([two, two.iloc[[5]]], ignore_index=True)  # a session with two bars
    actions = pd.DataFrame(
        {
            "ticker": ["T000"],
            "ex_date": [pd.Timestamp("2030-01-01")],
            "split_ratio": [0.0],
            "dividend_factor": [1.0],
        }
    )
    con = duckdb.connect()
    try:
        con.register("bars", pd.concat([one, twice, three], ignore_index=True))
        con.register("actions", actions)
        suspects = {row[0] for row in con.execute(level_suspects_sql("bars", "actions")).fetchall()}
    finally:
        con.close()
    assert suspects == {"T000", "T001"}


@pytest.fixture(scope="module")
def warehouse() -> duckdb.DuckDBPyConnection:
    """Bronze daily bars with duplicates, bad ticks and 100x prices on some tickers, a spike,
    and opening / closing prints outside the range on a ticker without faults."""
    faults = SimulatorFaults(duplicates=0.01, bad_ticks=0.005, price_100x=0.004)
    con = simulated_bronze_warehouse(TICKERS, START - dt.timedelta(days=200), END, CLOCK, faults)
    con.execute(
        "UPDATE bronze.daily_bars SET open = high * 1.05 "
        "WHERE ticker = 'B0004' AND day(session_date) = 15"
    )
    con.execute(
        "UPDATE bronze.daily_bars SET close = low * 0.9 "
        "WHERE ticker = 'B0004' AND day(session_date) = 3"
    )
    con.execute(
        "UPDATE bronze.daily_bars SET open = open * 30, high = high * 30, low = low * 30, "
        "close = close * 30 WHERE ticker = 'MSFT' AND session_date = DATE '2024-02-06'"
    )
    yield con
    con.close()


@pytest.mark.parametrize(
    "disabled", ["", "range_widened", "unit_100x,split_unapplied", "adj_close_recomputed"]
)
def test_routed_validation_equals_repairing_every_ticker(warehouse, monkeypatch, disabled):
    switches = RepairSwitches.from_disabled(disabled)
    repair = silver_validation._repair
    suspects: list[str] = []

    def spied(*args):
        result = repair(*args)
        suspects.extend(result[0])
        return result

    with monkeypatch.context() as patch:
        patch.setattr(silver_validation, "_repair", spied)
        routed = validate_daily_bars(warehouse, START, END, None, switches)
    # both routes are taken: some tickers are suspects, and B0004 (no faults) is not, so its
    # prints outside the range are widened on their own (`widen_ranges`)
    assert suspects and "B0004" not in suspects
    monkeypatch.setattr(
        silver_validation,
        "level_suspects_sql",
        lambda accepted, _actions: f"SELECT DISTINCT ticker FROM {accepted}",
    )
    everything = validate_daily_bars(warehouse, START, END, None, switches)
    for name in ("bars", "rejected", "repairs"):
        pd.testing.assert_frame_equal(
            sorted_validated(getattr(routed, name), name),
            sorted_validated(getattr(everything, name), name),
            check_dtype=False,
        )
    reasons = routed.bars.set_index("ticker")["repair_reason"].dropna()
    if switches.range_widened:
        # the prints outside the range of a ticker without faults are widened
        assert reasons.loc[["B0004"]].str.contains("range_widened").sum() >= 2
    else:
        assert (routed.rejected["reason"].isin(["open_outside_range", "close_outside_range"])).any()
    assert (routed.rejected["reason"] == "unexplained_price_spike").any()
