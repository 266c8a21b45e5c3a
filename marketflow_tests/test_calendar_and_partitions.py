from __future__ import annotations

import dataclasses
import datetime as dt

import dagster as dg
import pandas as pd
import pytest

from marketflow_assets.calendar import EXCHANGE_TZ, xnys
from marketflow_assets.definitions import build_definitions
from marketflow_assets.partitions import (
    SessionNotOpenError,
    build_sessions_partitions_def,
    ensure_sessions_opened,
)


def ny(text: str) -> dt.datetime:
    return pd.Timestamp(text, tz=EXCHANGE_TZ).to_pydatetime()


def test_partition_keys_are_exactly_the_nyse_sessions():
    pdef = build_sessions_partitions_def(dt.date(2000, 1, 3))
    with dg.partition_loading_context(effective_dt=ny("2026-11-20 20:00")):
        keys = pdef.get_partition_keys()
    keys = [k for k in keys if k <= "2026-11-20"]
    sessions = xnys().sessions_in_range(dt.date(2000, 1, 3), dt.date(2026, 11, 20))
    assert len(keys) == 6763 == len(sessions)
    assert keys == [s.isoformat() for s in sessions]
    # 9/11 closure, Hurricane Sandy, a national day of mourning: not partitions.
    for closed in ("2001-09-11", "2012-10-29", "2018-12-05"):
        assert closed not in keys


@pytest.mark.parametrize(
    ("now", "last_key"),
    [
        ("2024-11-27 10:00", "2024-11-27"),  # a trading day: the session in progress is a partition
        ("2024-11-27 23:00", "2024-11-27"),
        ("2024-11-29 10:00", "2024-11-29"),  # early close day
        ("2024-12-02 09:00", "2024-12-02"),  # before the open of a session
    ],
)
def test_current_session_is_materializable(now, last_key):
    pdef = build_sessions_partitions_def(dt.date(2024, 1, 2))
    with dg.partition_loading_context(effective_dt=ny(now)):
        assert pdef.get_last_partition_key() == last_key


@pytest.mark.parametrize(
    ("now", "early_key"),
    [
        ("2024-11-28 10:00", "2024-11-29"),
        ("2024-11-30 12:00", "2024-12-02"),
        ("2024-12-01 12:00", "2024-12-02"),
    ],
)
def test_dagster_33551_next_session_shows_early_and_is_refused(now, early_key):
    """On a holiday or weekend, end_offset=1 with exclusions exposes the next session early
    (dagster-io/dagster#33551). It exists as a partition, but materializing it is refused."""
    pdef = build_sessions_partitions_def(dt.date(2024, 1, 2))
    with dg.partition_loading_context(effective_dt=ny(now)):
        assert pdef.get_last_partition_key() == early_key
    with pytest.raises(SessionNotOpenError, match=f"{early_key}.*not opened yet.*33551"):
        ensure_sessions_opened([dt.date.fromisoformat(early_key)], ny(now))


def test_early_close_and_daylight_saving():
    cal = xnys()
    black_friday = dt.date(2024, 11, 29)
    assert cal.is_early_close(black_friday)
    assert cal.close_utc(black_friday).astimezone(EXCHANGE_TZ).hour == 13
    assert len(cal.minutes(black_friday)) == 210
    # DST starts 2024-03-10: the open moves from 14:30 to 13:30 UTC, always 09:30 in New York.
    assert cal.open_utc(dt.date(2024, 3, 8)).hour == 14
    assert cal.open_utc(dt.date(2024, 3, 11)).hour == 13
    assert len(cal.minutes(dt.date(2024, 3, 11))) == 390


def test_now_questions():
    cal = xnys()
    assert cal.open_session(ny("2024-06-07 10:00")) == dt.date(2024, 6, 7)
    assert cal.open_session(ny("2024-06-07 16:00")) is None
    assert cal.latest_closed_session(ny("2024-06-07 15:59")) == dt.date(2024, 6, 6)
    assert cal.latest_closed_session(ny("2024-06-08 12:00")) == dt.date(2024, 6, 7)
    assert cal.previous_session(dt.date(2024, 12, 26)) == dt.date(2024, 12, 24)


def test_start_date_must_be_a_session():
    with pytest.raises(ValueError, match="not an NYSE session; the next one is 2024-01-02"):
        build_sessions_partitions_def(dt.date(2024, 1, 1))


def test_partitions_are_the_union_of_the_universes_exchanges_sessions(settings):
    """build_definitions binds partitions from its Settings' universe: XNYS alone for a US one;
    for US + London + Tokyo tickers, a day any of them trades on."""
    us = build_definitions(dataclasses.replace(settings, tickers="AAPL,MSFT"))
    mixed = build_definitions(dataclasses.replace(settings, tickers="AAPL,AZN.L,7203.T"))

    def keys(defs: dg.Definitions) -> list[str]:
        pdef = defs.resolve_assets_def(dg.AssetKey(["silver", "daily_bars"])).partitions_def
        with dg.partition_loading_context(effective_dt=ny("2024-12-31 20:00")):
            return [k for k in pdef.get_partition_keys() if "2024-01-01" <= k <= "2024-12-31"]

    us_keys, mixed_keys = keys(us), keys(mixed)
    assert us_keys == [
        s.isoformat() for s in xnys().sessions_in_range(dt.date(2024, 1, 1), dt.date(2024, 12, 31))
    ]
    assert set(us_keys) < set(mixed_keys)
    assert "2024-07-04" in mixed_keys  # Independence Day: London and Tokyo trade
    assert "2024-08-26" in mixed_keys  # London's summer bank holiday: New York trades
    assert "2024-07-15" in mixed_keys  # Japan's Marine Day: London and New York trade
    assert "2024-01-01" not in mixed_keys  # all three closed
    assert "2024-12-25" in mixed_keys  # Christmas: Tokyo trades
    assert "2024-12-25" not in us_keys


def test_a_start_date_no_exchange_of_the_universe_trades_on_is_refused():
    with pytest.raises(ValueError, match="not a session of any of XLON, XNYS"):
        build_sessions_partitions_def(dt.date(2024, 12, 25), frozenset({"XNYS", "XLON"}))
    pdef = build_sessions_partitions_def(dt.date(2024, 7, 4), frozenset({"XNYS", "XLON"}))
    assert pdef.start.date() == dt.date(2024, 7, 4)
