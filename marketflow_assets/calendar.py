"""Exchange trading calendars: sessions, opens and closes, lunch breaks, early closes, minutes.

A thin, vectorised wrapper over `exchange_calendars`, so the rest of the code asks questions in
dates and UTC timestamps and never re-derives holiday or daylight-saving rules. `xnys()` is the
NYSE calendar (automation's clock, a US universe's partitions); `exchange_calendar(mic)` is any
exchange's (a ticker's own sessions and regular hours, see `exchanges.py`), and `session_hours`
is the one table of regular hours per (exchange, session) that intraday SQL joins against.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import numpy as np
import pandas as pd

from marketflow_assets import calendar_cache

EXCHANGE = "XNYS"
EXCHANGE_TZ = ZoneInfo("America/New_York")
CALENDAR_START = dt.date(1990, 1, 2)
# Holidays are rule-based, so the calendar is known years ahead; two years covers any deployment
# that is restarted at least that often.
CALENDAR_YEARS_AHEAD = 2


class SessionCalendar:
    """Sessions of one exchange as sorted numpy arrays, for fast bulk lookups."""

    def __init__(self, calendar: xcals.ExchangeCalendar):
        schedule = calendar.schedule
        sessions = schedule.index.values.astype("datetime64[D]")
        tz = ZoneInfo(str(calendar.tz))
        # Yahoo stamps daily bars at midnight exchange time; localising is slow, so do it once.
        # Where a daylight-saving change skips or repeats midnight (Tel Aviv, 1990s), the first
        # valid instant of the day.
        local_midnights = pd.DatetimeIndex(schedule.index).tz_localize(
            tz, nonexistent="shift_forward", ambiguous=np.zeros(len(schedule), dtype=bool)
        )
        self._set(
            calendar.name,
            tz,
            {
                "sessions": sessions,
                "opens": schedule["open"].values.astype("datetime64[ns]"),
                "closes": schedule["close"].values.astype("datetime64[ns]"),
                # Lunch breaks (XTKS, XHKG, ...): NaT on sessions without one.
                "break_starts": schedule["break_start"].values.astype("datetime64[ns]"),
                "break_ends": schedule["break_end"].values.astype("datetime64[ns]"),
                "early_closes": calendar.early_closes.values.astype("datetime64[D]"),
                "local_midnights_utc": local_midnights.tz_convert("UTC")
                .tz_localize(None)
                .values.astype("datetime64[ns]"),
            },
        )

    def _set(self, name: str, tz: ZoneInfo, arrays: Mapping[str, np.ndarray]) -> None:
        self.name = name
        self.tz = tz
        self._arrays = dict(arrays)  # what `calendar_cache` stores
        self.sessions = arrays["sessions"]
        self.opens = arrays["opens"]
        self.closes = arrays["closes"]
        self.break_starts = arrays["break_starts"]
        self.break_ends = arrays["break_ends"]
        self._early_closes = arrays["early_closes"]
        self.local_midnights = (
            pd.DatetimeIndex(arrays["local_midnights_utc"]).tz_localize("UTC").tz_convert(tz)
        )
        self.first = _to_date(self.sessions[0])
        self.last = _to_date(self.sessions[-1])

    @classmethod
    def from_arrays(
        cls, name: str, tz: ZoneInfo, arrays: Mapping[str, np.ndarray]
    ) -> SessionCalendar:
        """A calendar from the arrays of another (`calendar_cache.py`), without exchange_calendars."""
        calendar = cls.__new__(cls)
        calendar._set(name, tz, arrays)
        return calendar

    # -- membership and navigation -------------------------------------------------------
    def is_session(self, day: dt.date) -> bool:
        i = np.searchsorted(self.sessions, np.datetime64(day, "D"))
        return bool(i < len(self.sessions) and self.sessions[i] == np.datetime64(day, "D"))

    def sessions_in_range(self, start: dt.date, end: dt.date) -> list[dt.date]:
        lo = np.searchsorted(self.sessions, np.datetime64(start, "D"), side="left")
        hi = np.searchsorted(self.sessions, np.datetime64(end, "D"), side="right")
        return self.sessions[lo:hi].tolist()  # datetime64[D] -> datetime.date, in C

    def session_on_or_before(self, day: dt.date) -> dt.date | None:
        i = np.searchsorted(self.sessions, np.datetime64(day, "D"), side="right") - 1
        return _to_date(self.sessions[i]) if i >= 0 else None

    def previous_session(self, day: dt.date) -> dt.date | None:
        i = np.searchsorted(self.sessions, np.datetime64(day, "D"), side="left") - 1
        return _to_date(self.sessions[i]) if i >= 0 else None

    def next_session(self, day: dt.date) -> dt.date | None:
        i = np.searchsorted(self.sessions, np.datetime64(day, "D"), side="right")
        return _to_date(self.sessions[i]) if i < len(self.sessions) else None

    def offset(self, day: dt.date, n: int) -> dt.date:
        """The session `n` sessions after (n > 0) or before (n < 0) session `day`."""
        i = np.searchsorted(self.sessions, np.datetime64(day, "D"), side="left") + n
        if not 0 <= i < len(self.sessions):
            raise ValueError(f"{n} sessions from {day} is outside the {self.name} calendar")
        return _to_date(self.sessions[i])

    def map_to_sessions(self, days: pd.Series) -> pd.Series:
        """Vectorised: each date -> the session on or before it (NaT before the calendar)."""
        values = pd.to_datetime(days).values.astype("datetime64[D]")
        idx = np.searchsorted(self.sessions, values, side="right") - 1
        out = np.where(idx >= 0, self.sessions[np.clip(idx, 0, None)], np.datetime64("NaT"))
        return pd.Series(pd.to_datetime(out).date, index=days.index)

    def sessions_mask(self, days: pd.Series) -> np.ndarray:
        values = pd.to_datetime(days).values.astype("datetime64[D]")
        idx = np.clip(np.searchsorted(self.sessions, values), 0, len(self.sessions) - 1)
        return self.sessions[idx] == values

    # -- times ---------------------------------------------------------------------------
    def _index(self, session: dt.date) -> int:
        i = int(np.searchsorted(self.sessions, np.datetime64(session, "D")))
        if i >= len(self.sessions) or self.sessions[i] != np.datetime64(session, "D"):
            raise ValueError(f"{session} is not an {self.name} session")
        return i

    def open_utc(self, session: dt.date) -> dt.datetime:
        return _to_utc(self.opens[self._index(session)])

    def close_utc(self, session: dt.date) -> dt.datetime:
        return _to_utc(self.closes[self._index(session)])

    def is_early_close(self, session: dt.date) -> bool:
        self._index(session)
        i = np.searchsorted(self._early_closes, np.datetime64(session, "D"))
        return bool(
            i < len(self._early_closes) and self._early_closes[i] == np.datetime64(session, "D")
        )

    def minutes(self, session: dt.date) -> pd.DatetimeIndex:
        """Start of every regular-hours minute bar of the session, in UTC (none in a break)."""
        i = self._index(session)
        minutes = pd.date_range(
            self.open_utc(session), self.close_utc(session), freq="1min", inclusive="left"
        )
        if np.isnat(self.break_starts[i]):
            return minutes
        in_break = (minutes >= _to_utc(self.break_starts[i])) & (
            minutes < _to_utc(self.break_ends[i])
        )
        return minutes[~in_break]

    def schedule(self, start: dt.date, end: dt.date) -> pd.DataFrame:
        """session_date, open_utc, close_utc, break_start_utc, break_end_utc (NaT without a
        break) and minutes (regular-hours minute bars) for every session in [start, end]."""
        lo = np.searchsorted(self.sessions, np.datetime64(start, "D"), side="left")
        hi = np.searchsorted(self.sessions, np.datetime64(end, "D"), side="right")
        frame = pd.DataFrame(
            {
                "session_date": pd.to_datetime(self.sessions[lo:hi]).date,
                "open_utc": pd.to_datetime(self.opens[lo:hi]).tz_localize("UTC"),
                "close_utc": pd.to_datetime(self.closes[lo:hi]).tz_localize("UTC"),
                "break_start_utc": pd.to_datetime(self.break_starts[lo:hi]).tz_localize("UTC"),
                "break_end_utc": pd.to_datetime(self.break_ends[lo:hi]).tz_localize("UTC"),
            }
        )
        trading = frame["close_utc"] - frame["open_utc"]
        lunch = (frame["break_end_utc"] - frame["break_start_utc"]).fillna(pd.Timedelta(0))
        frame["minutes"] = ((trading - lunch).dt.total_seconds() // 60).astype("int64")
        return frame

    # -- "now" questions -----------------------------------------------------------------
    def latest_closed_session(self, now: dt.datetime) -> dt.date | None:
        """The most recent session whose close is at or before `now`."""
        i = np.searchsorted(self.closes, _to_np(now), side="right") - 1
        return _to_date(self.sessions[i]) if i >= 0 else None

    def latest_opened_session(self, now: dt.datetime) -> dt.date | None:
        """The most recent session whose open is at or before `now` (may still be trading)."""
        i = np.searchsorted(self.opens, _to_np(now), side="right") - 1
        return _to_date(self.sessions[i]) if i >= 0 else None

    def open_session(self, now: dt.datetime) -> dt.date | None:
        """The session trading at `now`, or None outside regular hours."""
        session = self.latest_opened_session(now)
        if session is not None and now < self.close_utc(session):
            return session
        return None


@cache
def xnys() -> SessionCalendar:
    end = dt.date.today() + dt.timedelta(days=365 * CALENDAR_YEARS_AHEAD)
    return _cached_calendar(
        EXCHANGE,
        CALENDAR_START,
        end,
        lambda: SessionCalendar(xcals.get_calendar(EXCHANGE, start=CALENDAR_START, end=end)),
    )


@cache
def exchange_calendar(mic: str) -> SessionCalendar:
    """The calendar of exchange `mic` (an ISO 10383 MIC = exchange_calendars name), cached per
    process (and on disk, `calendar_cache.py`): building one costs about a second. Clipped to
    what exchange_calendars records (XTKS from 1997, XBOM's holidays only a few years ahead)."""
    if mic == EXCHANGE:
        return xnys()
    start = pd.Timestamp(CALENDAR_START)
    end = pd.Timestamp.today().normalize() + pd.DateOffset(years=CALENDAR_YEARS_AHEAD)

    def build() -> SessionCalendar:
        nonlocal start, end
        try:
            return SessionCalendar(xcals.get_calendar(mic, start=start, end=end))
        except ValueError:  # outside the years the calendar records: clip to its bounds
            recorded = xcals.get_calendar(mic)
            start = max(start, recorded.bound_min() or start)
            end = min(end, recorded.bound_max() or end)
            return SessionCalendar(xcals.get_calendar(mic, start=start, end=end))

    return _cached_calendar(mic, start.date(), end.date(), build)


def _cached_calendar(
    mic: str, start: dt.date, end: dt.date, build: Callable[[], SessionCalendar]
) -> SessionCalendar:
    """The calendar asked for as (mic, start, end), from the on-disk cache when it holds it,
    else built and stored there."""
    path = calendar_cache.cache_file(mic, start, end)
    stored = calendar_cache.load(path)
    if stored is not None:
        return SessionCalendar.from_arrays(*stored)
    calendar = build()
    calendar_cache.store(path, calendar.name, calendar.tz, calendar._arrays)
    return calendar


def session_hours(mics: Iterable[str], start: dt.date, end: dt.date) -> pd.DataFrame:
    """Regular hours of every session of the exchanges `mics` in [start, end]: mic, timezone
    (IANA) and the `schedule` columns. One calendar lookup per exchange; SQL joins it on (mic, session_date)."""
    frames = [
        exchange_calendar(m)
        .schedule(start, end)
        .assign(mic=m, timezone=exchange_calendar(m).tz.key)
        for m in sorted(set(mics))
    ]
    if not frames:
        frames = [xnys().schedule(start, start).iloc[:0].assign(mic="", timezone="")]
    return pd.concat(frames, ignore_index=True)


def _to_date(value: np.datetime64) -> dt.date:
    return value.astype("datetime64[D]").item()


def _to_utc(value: np.datetime64) -> dt.datetime:
    return pd.Timestamp(value).tz_localize("UTC").to_pydatetime()


def _to_np(moment: dt.datetime) -> np.datetime64:
    if moment.tzinfo is None:
        raise ValueError(f"expected a timezone-aware timestamp, got {moment!r}")
    return np.datetime64(pd.Timestamp(moment).tz_convert("UTC").tz_localize(None), "ns")
