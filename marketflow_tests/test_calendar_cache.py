"""Exchange calendars read back from the on-disk cache (`calendar_cache.py`) are the calendars
exchange_calendars builds, array for array; a missing, corrupt or unwritable cache only costs
the rebuild."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from marketflow_assets import calendar as calendar_module
from marketflow_assets import calendar_cache
from marketflow_assets.calendar import exchange_calendar, xnys

ARRAYS = ("sessions", "opens", "closes", "break_starts", "break_ends", "_early_closes")


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    xnys.cache_clear()
    exchange_calendar.cache_clear()
    yield tmp_path / "marketflow" / "calendars"
    xnys.cache_clear()
    exchange_calendar.cache_clear()


def fresh(mic: str) -> calendar_module.SessionCalendar:
    xnys.cache_clear()
    exchange_calendar.cache_clear()
    return exchange_calendar(mic)


def assert_same(a: calendar_module.SessionCalendar, b: calendar_module.SessionCalendar) -> None:
    assert (a.name, a.tz, a.first, a.last) == (b.name, b.tz, b.first, b.last)
    for name in ARRAYS:
        left, right = getattr(a, name), getattr(b, name)
        assert left.dtype == right.dtype and np.array_equal(left, right, equal_nan=True), name
    pd.testing.assert_index_equal(a.local_midnights, b.local_midnights)
    pd.testing.assert_frame_equal(
        a.schedule(dt.date(2020, 1, 1), dt.date(2020, 3, 1)),
        b.schedule(dt.date(2020, 1, 1), dt.date(2020, 3, 1)),
    )


# XNYS: early closes; XTKS: lunch breaks and a clipped range; XTAE: midnights that daylight
# saving skipped (the first valid instant of the day).
@pytest.mark.parametrize("mic", ["XNYS", "XTKS", "XTAE"])
def test_a_cached_calendar_is_the_built_one(cache_home, mic):
    built = fresh(mic)
    assert [p.name.split("_")[0] for p in cache_home.glob("*.npz")] == [mic]
    read = fresh(mic)
    assert read is not built
    assert_same(read, built)
    expected = pd.DatetimeIndex(built.sessions.astype("datetime64[ns]")).tz_localize(
        built.tz, nonexistent="shift_forward", ambiguous=np.zeros(len(built.sessions), bool)
    )
    pd.testing.assert_index_equal(read.local_midnights, expected)


def test_a_corrupt_cache_file_is_rebuilt(cache_home):
    built = fresh("XNYS")
    (cached,) = cache_home.glob("XNYS_*.npz")
    whole = cached.read_bytes()
    for broken in (b"not a numpy archive", whole[: len(whole) // 2]):  # foreign, truncated
        cached.write_bytes(broken)
        assert calendar_cache.load(cached) is None
        assert_same(fresh("XNYS"), built)
        assert calendar_cache.load(cached) is not None  # rewritten whole


def test_older_files_of_the_exchange_are_removed_when_a_new_one_is_written(cache_home):
    cache_home.mkdir(parents=True)
    stale = cache_home / "XNYS_1990-01-02_2020-01-01_xcals-0.0_v1.npz"
    stale.write_bytes(b"an older range's")
    other = cache_home / "XLON_1990-01-02_2020-01-01_xcals-0.0_v1.npz"
    other.write_bytes(b"another exchange's")
    fresh("XNYS")
    assert not stale.exists() and other.exists()
    assert len(list(cache_home.glob("XNYS_*.npz"))) == 1


def test_an_unwritable_cache_still_gives_the_calendar(cache_home):
    cache_home.parent.mkdir(parents=True)
    cache_home.write_text("a file where the folder should be")
    built = fresh("XNYS")
    assert built.is_session(dt.date(2024, 7, 3)) and not built.is_session(dt.date(2024, 7, 4))
    assert cache_home.is_file()
