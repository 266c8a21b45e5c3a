"""The one-minute path: polling an open session, provider limits, alignment, VWAP, summary."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from marketflow_assets.calendar import EXCHANGE_TZ
from marketflow_assets.sources.base import BarsQuery
from marketflow_assets.sources.simulator import SimulatorSource
from marketflow_assets.storage.object_store import LocalObjectStore
from marketflow_assets.storage.raw_lake import RawLake
from marketflow_tests.helpers import make_settings, materialize, output_metadata, query, table

INTRADAY = [
    "raw/intraday_bars_1m",
    "bronze/intraday_bars_1m",
    "silver/corporate_actions",
    "silver/session_hours",
    "silver/intraday_bars_1m",
    "silver/rejected_bars",
    "gold/intraday_vwap",
    "gold/intraday_daily_summary",
    "gold/intraday_anomalies",
]
DOWNSTREAM = INTRADAY[1:]


def at(settings, text: str):
    return dataclasses.replace(
        settings, simulator_now=pd.Timestamp(text, tz=EXCHANGE_TZ).tz_convert("UTC").to_pydatetime()
    )


def minutes(settings) -> pd.DataFrame:
    return query(
        settings,
        "SELECT ticker, ts, open, high, low, close, volume FROM silver.intraday_bars_1m ORDER BY ticker, ts",
    )


def test_polling_an_open_session_converges_to_one_end_of_day_fetch(tmp_path):
    polled = make_settings(tmp_path / "polled", tickers="AAPL,KO")
    seen_last = []
    for clock in (
        "2024-06-07 10:15:30",
        "2024-06-07 12:40:10",
        "2024-06-07 15:59:30",
        "2024-06-07 18:00",
    ):
        materialize(at(polled, clock), select=INTRADAY, partition="2024-06-07")
        bars = minutes(polled)
        assert not bars.duplicated(["ticker", "ts"]).any()
        seen_last.append(bars[bars["ticker"] == "AAPL"].iloc[-1])
    # The bar still forming at the first poll was replaced, not duplicated.
    first_poll_last = seen_last[0]
    final = minutes(polled).set_index(["ticker", "ts"])
    assert final.loc[("AAPL", first_poll_last["ts"]), "volume"] > first_poll_last["volume"]
    # Each poll after the first asked only from each ticker's watermark.
    manifests = RawLake(LocalObjectStore(polled.lake_root)).manifests(
        "simulator", "intraday_bars_1m"
    )
    assert (
        len(manifests) == 4
        and "since" not in manifests[0].request
        and "since" in manifests[1].request
    )

    once = make_settings(tmp_path / "once", tickers="AAPL,KO")
    materialize(at(once, "2024-06-07 18:00"), select=INTRADAY, partition="2024-06-07")
    pd.testing.assert_frame_equal(minutes(polled), minutes(once))
    assert len(minutes(once)) == 2 * 390


def test_early_close_and_daylight_saving_alignment(tmp_path):
    black_friday = make_settings(tmp_path / "bf", tickers="MSFT")
    materialize(
        at(black_friday, "2024-11-29 17:00"),
        select=[*INTRADAY, "gold/hourly_bars"],
        partition_range=("2024-11-27", "2024-11-29"),
    )
    counts = query(
        black_friday,
        "SELECT session_date, count(*) AS n, max(ts) AS last "
        "FROM silver.intraday_bars_1m GROUP BY 1 ORDER BY 1",
    )
    # Thanksgiving is not a session; the Friday after closes at 13:00 (12:59 is the last minute).
    assert counts["n"].tolist() == [390, 210]
    assert counts["last"].iloc[-1] == pd.Timestamp("2024-11-29 17:59", tz="UTC")
    summary = table(black_friday, "gold.intraday_daily_summary", "session_date")
    assert summary["minutes_expected"].tolist() == [390, 210]
    assert (summary["minutes_missing"] == 0).all()

    # Hourly bars follow the session: 09:30-10:30 first, the last hour cut at the close.
    hourly = table(black_friday, "gold.hourly_bars", "session_date, hour_of_session")
    local_starts = hourly["hour_start"].dt.tz_convert(EXCHANGE_TZ).dt.strftime("%H:%M")
    assert local_starts.groupby(hourly["session_date"]).apply(list).tolist() == [
        ["09:30", "10:30", "11:30", "12:30", "13:30", "14:30", "15:30"],
        ["09:30", "10:30", "11:30", "12:30"],
    ]
    minutes_per_hour = hourly.groupby("session_date")["minutes"].apply(list).tolist()
    assert minutes_per_hour == [[60] * 6 + [30], [60, 60, 60, 30]]
    rolled = hourly.groupby("session_date").agg(
        high=("high", "max"), low=("low", "min"), volume=("volume", "sum")
    )
    np.testing.assert_array_equal(rolled["volume"], summary["volume"])
    np.testing.assert_allclose(rolled[["high", "low"]], summary[["high", "low"]])

    dst = make_settings(tmp_path / "dst", tickers="MSFT")
    materialize(
        at(dst, "2024-03-12 18:00"), select=INTRADAY, partition_range=("2024-03-07", "2024-03-12")
    )
    opens = query(
        dst,
        "SELECT session_date, min(ts) AS first FROM silver.intraday_bars_1m GROUP BY 1 ORDER BY 1",
    )
    utc_hours = [t.hour for t in opens["first"]]
    assert utc_hours == [
        14,
        14,
        13,
        13,
    ]  # 09:30 New York: EST then EDT (clocks changed on 2024-03-10)
    local = [t.tz_convert(EXCHANGE_TZ).strftime("%H:%M") for t in opens["first"]]
    assert set(local) == {"09:30"}


def test_sessions_older_than_the_window_fail_with_the_available_interval(settings):
    result = materialize(settings, select=INTRADAY, partition="2024-04-01", raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data.error)
    assert "2024-04-01" in message and "30 days" in message and "2024-05-09..2024-06-07" in message


def test_a_whole_graph_run_over_an_old_range_skips_intraday_loudly(settings):
    daily = ["raw/daily_bars", "bronze/daily_bars", "silver/daily_bars"]
    result = materialize(
        settings, select=[*INTRADAY, *daily], partition_range=("2024-05-01", "2024-05-10")
    )
    assert result.success
    meta = output_metadata(result, ["raw", "intraday_bars_1m"])
    assert meta["sessions_outside_provider_window"][:2] == ["2024-05-01", "2024-05-02"]
    assert len(table(settings, "silver.daily_bars")) == 8 * 5


def test_ten_sessions_are_fetched_in_seven_day_chunks(settings):
    later = at(dataclasses.replace(settings, tickers="KO"), "2024-06-20 18:00")
    # Ten calendar days, seven sessions (Juneteenth is a holiday): two requests of <= 7 days.
    result = materialize(later, select=INTRADAY, partition_range=("2024-06-10", "2024-06-19"))
    assert output_metadata(result, ["raw", "intraday_bars_1m"])["provider_requests"] == 2
    spans = [
        (dt.date.fromisoformat(m.request["start"]), dt.date.fromisoformat(m.request["end"]))
        for m in RawLake(LocalObjectStore(later.lake_root)).manifests(
            "simulator", "intraday_bars_1m"
        )
    ]
    assert all((end - start).days < 7 for start, end in spans)
    assert (
        query(later, "SELECT count(DISTINCT session_date) AS n FROM silver.intraday_bars_1m")["n"][
            0
        ]
        == 7
    )


def test_vwap_matches_hand_computation_and_resets_each_open(settings):
    two_days = at(dataclasses.replace(settings, tickers="AAPL,TSLA"), "2024-06-07 18:00")
    materialize(two_days, select=INTRADAY, partition_range=("2024-06-06", "2024-06-07"))
    bars = query(two_days, "SELECT * FROM silver.intraday_bars_1m ORDER BY ticker, ts")
    tp = (bars["high"] + bars["low"] + bars["close"]) / 3
    group = [bars["ticker"], bars["session_date"]]
    expected = (tp * bars["volume"]).groupby(group).cumsum() / bars["volume"].groupby(
        group
    ).cumsum()
    vwap = query(two_days, "SELECT * FROM gold.intraday_vwap ORDER BY ticker, ts")
    np.testing.assert_allclose(vwap["vwap"], expected, rtol=1e-12)
    firsts = vwap.groupby(["ticker", "session_date"]).head(1)
    np.testing.assert_allclose(
        firsts["vwap"], firsts["typical_price"], rtol=1e-12
    )  # reset at the open
    summary = table(two_days, "gold.intraday_daily_summary", "ticker, session_date")
    daily = (
        SimulatorSource(seed=0, clock=two_days.simulator_now)
        .fetch_bars(BarsQuery(("AAPL", "TSLA"), dt.date(2024, 6, 6), dt.date(2024, 6, 7)))
        .frame
    )
    assert summary["close"].tolist() == daily.sort_values(["Ticker", "Date"])["Close"].tolist()
    assert summary["volume"].tolist() == daily.sort_values(["Ticker", "Date"])["Volume"].tolist()


def land_crafted(settings, frame: pd.DataFrame, session: str) -> None:
    raw = RawLake(LocalObjectStore(settings.lake_root))
    raw.land_frame(
        source="simulator",
        dataset="intraday_bars_1m",
        frame=frame,
        partitions=pd.Series(session, index=frame.index),
        request={"landed": {"first": session, "last": session}},
        tickers={
            t: {"status": "ok", "rows": int(n)} for t, n in frame["Ticker"].value_counts().items()
        },
        fetched_at=settings.simulator_now,
        run_id=None,
        watermark_column="Datetime",
    )


def test_out_of_hours_minutes_are_rejected_and_missing_minutes_counted(settings):
    sim = SimulatorSource(seed=0, clock=settings.simulator_now)
    frame = sim.fetch_bars(
        BarsQuery(("AAPL",), dt.date(2024, 6, 7), dt.date(2024, 6, 7), "1m")
    ).frame
    frame = frame.drop(index=[100, 101, 102, 103, 104])  # five missing minutes
    early = frame.iloc[[0]].assign(Datetime=pd.Timestamp("2024-06-07 09:29", tz=EXCHANGE_TZ))
    late = frame.iloc[[-1]].assign(Datetime=pd.Timestamp("2024-06-07 16:00", tz=EXCHANGE_TZ))
    land_crafted(settings, pd.concat([early, frame, late], ignore_index=True), "2024-06-07")
    materialize(settings, select=DOWNSTREAM, partition="2024-06-07")
    rejected = table(settings, "silver.rejected_bars")
    assert rejected["reason"].tolist() == ["outside_session_hours", "outside_session_hours"]
    assert (rejected["interval"] == "1m").all() and "09:29" in rejected["detail"].iloc[
        0
    ] + rejected["detail"].iloc[1]
    summary = table(settings, "gold.intraday_daily_summary").iloc[0]
    assert (summary["minutes_present"], summary["minutes_missing"]) == (385, 5)


@pytest.mark.parametrize("threshold", [4.0])
def test_anomalies_list_minutes_beyond_the_threshold_with_their_score(settings, threshold):
    sim = SimulatorSource(seed=0, clock=settings.simulator_now)
    frame = sim.fetch_bars(BarsQuery(("KO",), dt.date(2024, 6, 7), dt.date(2024, 6, 7), "1m")).frame
    spike = frame.index[200]
    frame.loc[spike, "Volume"] = frame["Volume"].max() * 50  # a volume burst
    land_crafted(settings, frame, "2024-06-07")
    materialize(
        settings,
        select=DOWNSTREAM,
        partition="2024-06-07",
        run_config={"ops": {"gold__intraday_anomalies": {"config": {"threshold": threshold}}}},
    )
    anomalies = table(settings, "gold.intraday_anomalies")
    burst = anomalies[
        (anomalies["metric"] == "volume")
        & (anomalies["ts"] == frame.loc[spike, "Datetime"].tz_convert("UTC"))
    ]
    assert len(burst) == 1 and burst["robust_z"].iloc[0] > threshold
    assert (anomalies["robust_z"].abs() > threshold).all()
