"""When to ask the provider for a ticker's financial statements again.

Statements change a few times a year: at an earnings release (new quarter, often restating the
previous ones), and rarely in between. Fetching every ticker every day costs one provider
request per ticker and day (500 a day for 500 tickers with yfinance) to learn nothing on ~60
days out of 63. A ticker is fetched when one of these holds (the first that holds is its
reason, recorded in the run's metadata):

- `forced`: the run's config says `refresh: true`;
- `new`: it was never asked;
- `release_due`: an earnings release is expected. When the provider's earnings calendar in the
  ticker's latest document lists the upcoming date (Yahoo does), the ticker is asked once
  after it; when the date must be estimated (a quarter after the last listed release, else a
  quarter plus 45 days, the 10-Q deadline, after the latest period), it is asked once a day
  from `release_watch_days` before the estimate until its statements show the release (the
  estimate then moves a quarter on), for at most `max_age_days` after the estimate;
- `release_pending`: the latest document lists a past release whose period its statements do
  not hold yet (providers update statements a day or more after a release): asked once a day
  for `release_watch_days` after the release;
- `routine`: its slot weekday, once every ~`max_age_days` (every `max_age_days` x 5/7
  weekdays; the slot is a stable hash of the ticker), so each daily run asks about the same
  share of the universe, even right after one bulk fetch of all of it, and a restatement made
  outside a release is seen within ~`max_age_days`;
- `overdue`: not asked for `max_age_days` + 7 days (runs were missed on its slot days).

Everything is decided from the raw lake: the manifests (when each ticker was last asked) and
each ticker's latest document as served (its calendar and periods). A document this module
cannot read is treated as having no calendar (routine refreshes only); bronze is where a bad
document fails, naming it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from marketflow_assets.calendar import EXCHANGE_TZ
from marketflow_assets.sources.fundamentals import LONG_FORMAT, YAHOO_FORMAT
from marketflow_assets.storage.raw_lake import FetchManifest, RawLake

QUARTER = pd.Timedelta(days=91)
RELEASE_LAG = pd.Timedelta(days=45)  # period end -> release when the provider lists no release
# A release reports a period that ended at most this long before it (10-Q: 40-45 days; 10-K:
# 60-90 days): a release later than the latest period end + this is one the statements lack.
RELEASE_COVERS = pd.Timedelta(days=95)
RETRY = pd.Timedelta(hours=20)  # at most one fetch a day while a release is awaited
STATE_COLUMNS = (
    "ticker",
    "last_attempt",  # provider clock of the last fetch that asked for the ticker (ok or not)
    "next_release",  # the first release its latest document lists after that document's fetch
    "last_release",  # the latest release (or filing) on or before it
    "latest_period_end",  # the latest fiscal period its statements hold
)
REASONS = ("forced", "new", "release_due", "release_pending", "routine", "overdue")
OVERDUE_GRACE = pd.Timedelta(days=7)


@dataclass(frozen=True)
class RefreshPolicy:
    max_age_days: int = 30
    release_watch_days: int = 7

    def __post_init__(self):
        if self.max_age_days < 1 or self.release_watch_days < 0:
            raise ValueError(
                f"max_age_days must be >= 1 and release_watch_days >= 0 (got {self.max_age_days}"
                f" and {self.release_watch_days})"
            )


def _texts(record) -> tuple[list, list]:
    """The release (or filing) dates and the period ends a document lists, as served (text)."""
    if not isinstance(record, dict):
        return [], []
    if record.get("format") == YAHOO_FORMAT:
        releases = list(record.get("earnings_dates") or [])
        if not releases:  # Yahoo lists no calendar for some tickers: its SEC filings then
            releases = [f.get("date") for f in record.get("sec_filings") or [] if f]
        periods = [
            end
            for statement in ("income", "balance", "cashflow")
            for tables in [record.get(statement) or {}]
            for period_type in ("annual", "quarterly")
            for end in (tables.get(period_type) or {})
        ]
        return releases, periods
    if record.get("format") == LONG_FORMAT:
        rows = [r for r in record.get("rows") or [] if isinstance(r, dict)]
        return [r.get("reported_at") for r in rows], [r.get("period_end") for r in rows]
    return [], []


CALENDAR_COLUMNS = ("next_release", "last_release", "latest_period_end")


def calendars(documents: dict[str, tuple[dict, dt.datetime]]) -> pd.DataFrame:
    """`CALENDAR_COLUMNS` per ticker (index) of {ticker: (document, fetched_at)}: the first
    release listed after the fetch, the latest on or before it, the latest period end (NaT
    where the document says nothing or cannot be read). Every date of every document is
    parsed in one pass."""
    rows = [
        (ticker, kind, text, fetched_at)
        for ticker, (record, fetched_at) in documents.items()
        for kind, texts in zip(("release", "period"), _texts(record), strict=True)
        for text in texts
        if isinstance(text, str)
    ]
    frame = pd.DataFrame(rows, columns=["ticker", "kind", "text", "fetched_at"])
    frame["at"] = pd.to_datetime(frame["text"], utc=True, format="ISO8601", errors="coerce")
    frame["fetched_at"] = pd.to_datetime(frame["fetched_at"], utc=True)
    frame = frame[frame["at"].notna()]
    releases = frame[frame["kind"] == "release"]
    upcoming = releases["at"] > releases["fetched_at"]
    out = pd.DataFrame(
        {
            "next_release": releases[upcoming].groupby("ticker")["at"].min(),
            "last_release": releases[~upcoming].groupby("ticker")["at"].max(),
            "latest_period_end": frame[frame["kind"] == "period"].groupby("ticker")["at"].max(),
        },
        columns=list(CALENDAR_COLUMNS),
    )
    out = out.reindex(list(documents))
    for column in CALENDAR_COLUMNS:
        out[column] = pd.to_datetime(out[column], utc=True)
    return out


def release_calendar(record: dict, fetched_at: dt.datetime) -> dict:
    """`CALENDAR_COLUMNS` of one document as served at `fetched_at` (NaT where it says
    nothing), for the Yahoo and long formats; other formats: all NaT."""
    return calendars({"_": (record, fetched_at)}).iloc[0].to_dict()


def ticker_state(raw: RawLake, manifests: list[FetchManifest], tickers) -> pd.DataFrame:
    """`STATE_COLUMNS` per ticker: when it was last asked (every manifest listing it) and the
    calendar of its latest document (read from the lake: one document per ticker, whatever
    the number of fetches)."""
    last_attempt: dict[str, dt.datetime] = {}
    latest_ok: dict[str, FetchManifest] = {}
    for m in manifests:  # oldest first: later fetches overwrite
        for ticker, info in m.tickers.items():
            last_attempt[ticker] = m.fetched_at
            if info.get("status") == "ok":
                latest_ok[ticker] = m
    wanted = {t for t in tickers if t in latest_ok}
    documents: dict[str, tuple[dict, dt.datetime]] = {}
    for m in {id(latest_ok[t]): latest_ok[t] for t in wanted}.values():
        mine = {t for t in wanted if latest_ok[t] is m}
        for obj in m.objects:
            for ticker, record in raw.read_records(obj).items():
                if ticker in mine:
                    documents[ticker] = (record, m.fetched_at)
    frame = calendars(documents).reindex(list(tickers))
    frame.insert(
        0, "last_attempt", pd.to_datetime([last_attempt.get(t) for t in tickers], utc=True)
    )
    return frame.rename_axis("ticker").reset_index()[list(STATE_COLUMNS)]


def _hash(ticker: str) -> int:
    """blake2b: stable across machines and runs (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.blake2b(ticker.encode(), digest_size=8).digest(), "big")


def routine_period(max_age_days: int) -> int:
    """Weekdays between two routine fetches of a ticker: ~`max_age_days` calendar days."""
    return max(1, round(max_age_days * 5 / 7))


def routine_slot(tickers: pd.Series, period: int) -> np.ndarray:
    """A stable weekday slot in 0..period-1 per ticker (the same on every machine and run)."""
    return np.array([_hash(t) % period for t in tickers], dtype=np.int64)


def weekday_number(now: pd.Timestamp) -> int:
    """Weekdays from 1970-01-01 to `now`'s date in New York (a weekend counts as Monday)."""
    day = np.datetime64(now.tz_convert(EXCHANGE_TZ).date(), "D")
    return int(np.busday_count(np.datetime64("1970-01-01", "D"), day))


def decide(
    state: pd.DataFrame, now: dt.datetime, policy: RefreshPolicy, *, forced: bool = False
) -> pd.Series:
    """The reason to fetch each ticker of `state` now (`REASONS`), or "" not to; indexed by
    ticker. Pure: everything it looks at is in `state`, `now` and `policy`."""
    now = pd.Timestamp(now).tz_convert("UTC")
    attempt = state["last_attempt"]
    since = now - attempt
    watch = pd.Timedelta(days=policy.release_watch_days)
    max_age = pd.Timedelta(days=policy.max_age_days)
    expected = (
        state["next_release"]
        .fillna(state["last_release"] + QUARTER)
        .fillna(state["latest_period_end"] + QUARTER + RELEASE_LAG)
    )
    # A listed date is when to look; an estimate is watched from `watch` before it until the
    # routine bound after it (an annual release comes weeks later than a quarter's).
    listed = state["next_release"].notna()
    start = expected.where(listed, expected - watch)
    end = (expected + watch).where(listed, expected + max_age)
    retry = since >= RETRY
    due = (start <= now) & ((attempt < start) | ((now <= end) & retry))
    lacking = state["last_release"] - state["latest_period_end"] > RELEASE_COVERS
    pending = lacking & (now <= state["last_release"] + watch) & retry
    period = routine_period(policy.max_age_days)
    on_slot = routine_slot(state["ticker"], period) == weekday_number(now) % period
    reason = np.select(
        [
            np.full(len(state), forced),
            attempt.isna().to_numpy(),
            due.fillna(False).to_numpy(bool),
            pending.fillna(False).to_numpy(bool),
            on_slot & retry.fillna(False).to_numpy(bool),
            (since > max_age + OVERDUE_GRACE).fillna(False).to_numpy(bool),
        ],
        list(REASONS),
        default="",
    )
    return pd.Series(reason, index=state["ticker"].to_numpy(), name="reason")
