"""The simulator reproduces the provider semantics the pipeline depends on (DESIGN.md)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from marketflow_assets.sources.base import BarsQuery, ProviderWindowError, RateLimitError
from marketflow_assets.sources.simulator import SimulatorFaults, SimulatorSource

EVENING = dt.datetime(2024, 6, 7, 22, tzinfo=dt.UTC)


def daily(sim: SimulatorSource, tickers: tuple[str, ...], start: str, end: str) -> pd.DataFrame:
    payload = sim.fetch_bars(
        BarsQuery(tickers, dt.date.fromisoformat(start), dt.date.fromisoformat(end))
    )
    return payload.frame


def test_same_seed_same_payload_and_independent_of_the_request():
    a = daily(SimulatorSource(seed=3, clock=EVENING), ("AAPL", "KO"), "2024-05-01", "2024-06-07")
    b = daily(SimulatorSource(seed=3, clock=EVENING), ("KO", "AAPL"), "2024-05-01", "2024-06-07")
    pd.testing.assert_frame_equal(
        a.sort_values(["Ticker", "Date"]).reset_index(drop=True),
        b.sort_values(["Ticker", "Date"]).reset_index(drop=True),
    )
    narrow = daily(SimulatorSource(seed=3, clock=EVENING), ("KO",), "2024-06-03", "2024-06-03")
    assert (
        narrow.iloc[0]["Close"]
        == a[(a.Ticker == "KO") & (a.Date.dt.day == 3) & (a.Date.dt.month == 6)].iloc[0]["Close"]
    )
    other_seed = daily(SimulatorSource(seed=4, clock=EVENING), ("KO",), "2024-06-03", "2024-06-03")
    assert other_seed.iloc[0]["Close"] != narrow.iloc[0]["Close"]


def test_yahoo_shape_and_realistic_values():
    frame = daily(
        SimulatorSource(seed=0, clock=EVENING), ("AAPL", "^GSPC"), "2024-05-01", "2024-06-07"
    )
    assert list(frame.columns) == [
        "Ticker",
        "Date",
        "Open",
        "High",
        "Low",
        "Close",
        "Adj Close",
        "Volume",
        "Dividends",
        "Stock Splits",
    ]
    assert str(frame["Date"].dt.tz) == "America/New_York" and (frame["Date"].dt.hour == 0).all()
    assert (frame["Low"] <= frame[["Open", "Close"]].min(axis=1)).all()
    assert (frame["High"] >= frame[["Open", "Close"]].max(axis=1)).all()
    assert frame["Volume"].dtype == np.int64 and (frame["Volume"] > 0).all()
    assert frame.groupby("Ticker").size().to_dict() == {"AAPL": 27, "^GSPC": 27}


def test_split_as_of_semantics():
    """TSLA splits 5:1 on 2014-04-21: fetched before, bars are as traded; fetched after, bars
    before the ex-date are divided by 5 and volumes multiplied by 5."""
    before = daily(
        SimulatorSource(seed=0, clock=dt.datetime(2014, 4, 18, 22, tzinfo=dt.UTC)),
        ("TSLA",),
        "2014-04-14",
        "2014-04-17",
    )
    after = daily(
        SimulatorSource(seed=0, clock=dt.datetime(2014, 5, 1, 22, tzinfo=dt.UTC)),
        ("TSLA",),
        "2014-04-14",
        "2014-04-22",
    )
    pre = after[after["Date"].dt.date < dt.date(2014, 4, 21)].reset_index(drop=True)
    np.testing.assert_allclose(pre["Close"] * 5, before["Close"], rtol=1e-12)
    np.testing.assert_array_equal(pre["Volume"], before["Volume"] * 5)
    ex = after[after["Date"].dt.date == dt.date(2014, 4, 21)].iloc[0]
    assert ex["Stock Splits"] == 5.0
    assert (after["Stock Splits"] != 0).sum() == 1


def test_adj_close_is_crsp_dividend_adjusted():
    sim = SimulatorSource(seed=0, clock=EVENING)
    ex_date = sim.corporate_actions("KO", dt.date(2024, 6, 7)).iloc[-1]
    frame = daily(sim, ("KO",), "2024-05-01", "2024-06-07").set_index(
        pd.Index(daily(sim, ("KO",), "2024-05-01", "2024-06-07")["Date"].dt.date)
    )
    e = ex_date["ex_date"]
    prev = frame.index[frame.index.get_loc(e) - 1]
    factor = 1 - frame.loc[e, "Dividends"] / frame.loc[prev, "Close"]
    assert frame.loc[e, "Dividends"] == pytest.approx(ex_date["dividend"])
    assert frame.loc[prev, "Adj Close"] == pytest.approx(
        frame.loc[prev, "Close"] * factor, rel=1e-12
    )
    assert frame.loc[e, "Adj Close"] == frame.loc[e, "Close"]


def test_forming_bar_during_the_session_and_nothing_after_the_clock():
    noon = dt.datetime(2024, 6, 7, 16, 0, tzinfo=dt.UTC)  # 12:00 New York
    frame = daily(SimulatorSource(seed=0, clock=noon), ("AAPL",), "2024-06-06", "2024-06-10")
    assert list(frame["Date"].dt.date) == [dt.date(2024, 6, 6), dt.date(2024, 6, 7)]
    final = daily(
        SimulatorSource(seed=0, clock=EVENING), ("AAPL",), "2024-06-07", "2024-06-07"
    ).iloc[0]
    forming = frame.iloc[1]
    assert forming["Open"] == final["Open"] and forming["Volume"] < final["Volume"]


def test_minute_bars_aggregate_exactly_to_the_daily_bar_and_respect_limits():
    sim = SimulatorSource(seed=0, clock=EVENING)
    minutes = sim.fetch_bars(
        BarsQuery(("MSFT",), dt.date(2024, 6, 3), dt.date(2024, 6, 7), "1m")
    ).frame
    assert minutes.groupby(minutes["Datetime"].dt.date).size().tolist() == [390] * 5
    day = minutes[minutes["Datetime"].dt.date == dt.date(2024, 6, 5)]
    bar = daily(sim, ("MSFT",), "2024-06-05", "2024-06-05").iloc[0]
    assert (day["Open"].iloc[0], day["High"].max(), day["Low"].min(), day["Close"].iloc[-1]) == (
        bar["Open"],
        bar["High"],
        bar["Low"],
        bar["Close"],
    )
    assert day["Volume"].sum() == bar["Volume"]
    assert day["Datetime"].iloc[0].strftime("%H:%M") == "09:30"
    with pytest.raises(ProviderWindowError, match="last 30 days"):
        sim.fetch_bars(BarsQuery(("MSFT",), dt.date(2024, 4, 1), dt.date(2024, 4, 5), "1m"))
    with pytest.raises(ProviderWindowError, match="at most 7 days"):
        sim.fetch_bars(BarsQuery(("MSFT",), dt.date(2024, 5, 20), dt.date(2024, 6, 7), "1m"))


def test_faults_are_switchable_and_deterministic():
    clean = daily(SimulatorSource(seed=0, clock=EVENING), ("AAPL",), "2023-06-01", "2024-06-07")
    faults = SimulatorFaults(missing_bars=0.05, duplicates=0.05, bad_ticks=0.05, price_100x=0.02)
    noisy = daily(
        SimulatorSource(seed=0, clock=EVENING, faults=faults), ("AAPL",), "2023-06-01", "2024-06-07"
    )
    again = daily(
        SimulatorSource(seed=0, clock=EVENING, faults=faults), ("AAPL",), "2023-06-01", "2024-06-07"
    )
    pd.testing.assert_frame_equal(noisy, again)
    assert noisy["Date"].nunique() < len(clean)  # missing bars
    assert noisy["Date"].duplicated().any()  # duplicates
    assert (
        (noisy["High"] < noisy["Low"]).any()
        or (noisy["Close"] < 0).any()
        or noisy["Open"].isna().any()
    )
    ratio = (
        noisy.drop_duplicates("Date").set_index("Date")["Close"] / clean.set_index("Date")["Close"]
    )
    assert ((ratio - 100).abs() < 1e-9).any()  # 100x errors


def test_rate_limits_and_unknown_tickers():
    sim = SimulatorSource(seed=0, clock=EVENING, faults=SimulatorFaults(rate_limit=1.0))
    with pytest.raises(RateLimitError, match="429"):
        sim.fetch_bars(BarsQuery(("AAPL",), dt.date(2024, 6, 3), dt.date(2024, 6, 3)))
    sim = SimulatorSource(seed=0, clock=EVENING, faults=SimulatorFaults.parse("unknown=NOPE"))
    payload = sim.fetch_bars(BarsQuery(("AAPL", "NOPE"), dt.date(2024, 6, 3), dt.date(2024, 6, 3)))
    assert "NOPE" in payload.errors and set(payload.frame["Ticker"]) == {"AAPL"}


def test_fault_spec_errors_name_the_fault():
    with pytest.raises(ValueError, match="unknown simulator fault 'typo'"):
        SimulatorFaults.parse("typo=1")
    with pytest.raises(ValueError, match="missing_bars"):
        SimulatorFaults.parse("missing_bars=2")


def test_profiles_carry_sectors():
    payload = SimulatorSource(seed=0, clock=EVENING).fetch_profiles(("AAPL", "^GSPC", "SYNTH1"))
    assert payload.records["AAPL"]["sector"] == "Technology"
    assert payload.records["^GSPC"]["quoteType"] == "INDEX"
    assert payload.records["SYNTH1"]["sector"]  # deterministic synthetic listing
