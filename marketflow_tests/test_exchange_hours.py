"""Exchange facts MarketFlow derives once and joins everywhere: the suffix -> MIC mapping in SQL
agrees with Python's, each exchange's time zone is exchange_calendars' own, and a session's
regular minutes skip the lunch break."""

from __future__ import annotations

import datetime as dt

import duckdb
import exchange_calendars as xcals
import pandas as pd
import pytest

from marketflow_assets.calendar import exchange_calendar, session_hours
from marketflow_assets.exchanges import (
    MIC_TIMEZONES,
    SUFFIX_EXCHANGES,
    UnknownExchangeError,
    listing_of,
    ticker_mic_sql,
    ticker_timezone_sql,
)

SAMPLES = ["AAPL", "BRK-B", "^GSPC", "EURUSD=X", "AZN.L", "7203.T", "0700.HK", "RY.TO", "X.Y.DE"]


def test_sql_suffix_mapping_is_listing_of():
    con = duckdb.connect()
    got = con.execute(
        f"SELECT t, {ticker_mic_sql('t')}, {ticker_timezone_sql('t')} FROM unnest(?) AS u(t)",
        [[*SAMPLES, "FOO.XX"]],
    ).fetchall()
    expected = {t: listing_of(t).mic for t in SAMPLES}
    assert {t: mic for t, mic, _ in got if t != "FOO.XX"} == expected
    assert {t: mic for t, mic, _ in got}["FOO.XX"] is None  # unknown: no exchange
    assert {t: tz for t, _, tz in got}["7203.T"] == "Asia/Tokyo"
    with pytest.raises(UnknownExchangeError, match=r"FOO\.XX: unknown exchange suffix \.XX"):
        listing_of("FOO.XX")


def test_time_zones_are_exchange_calendars_own():
    assert {x.mic for x in SUFFIX_EXCHANGES.values()} <= set(MIC_TIMEZONES)
    for mic, tz in MIC_TIMEZONES.items():
        assert str(xcals.get_calendar(mic, start="2024-01-02", end="2024-02-01").tz) == tz, mic


def test_a_midnight_that_daylight_saving_skips_still_dates_a_bar():
    # Tel Aviv moved its clocks at midnight in 1990: the calendar still builds, every session
    # has a local midnight stamp (what the simulator and Yahoo date daily bars with).
    assert exchange_calendar("XTAE").local_midnights.notna().all()


def test_regular_minutes_skip_the_lunch_break_and_follow_early_closes():
    tokyo = exchange_calendar("XTKS")
    minutes = tokyo.minutes(dt.date(2024, 6, 19))
    assert len(minutes) == 300
    assert pd.Timestamp("2024-06-19 02:29", tz="UTC") in minutes  # 11:29 JST
    assert pd.Timestamp("2024-06-19 02:30", tz="UTC") not in minutes  # lunch
    assert pd.Timestamp("2024-06-19 03:30", tz="UTC") in minutes  # 12:30 JST
    hours = session_hours({"XNYS", "XLON", "XTKS"}, dt.date(2024, 12, 24), dt.date(2024, 12, 24))
    by_mic = hours.set_index("mic")
    assert by_mic.loc["XNYS", "minutes"] == 210  # Christmas Eve: 13:00 close
    assert by_mic.loc["XLON", "minutes"] == 270  # 12:30 close
    assert by_mic.loc["XTKS", "minutes"] == 330  # closes 15:30 since 2024-11-05
    assert pd.isna(by_mic.loc["XLON", "break_start_utc"])
    assert exchange_calendar("XNYS").is_early_close(dt.date(2024, 12, 24))
    assert not exchange_calendar("XTKS").is_early_close(dt.date(2024, 12, 24))
