"""What a raw materialization must ask the provider for.

A (ticker, session) is *covered* when a committed fetch asked for that ticker and session and
was made after the session closed (a bar fetched mid-session is provisional). Materializing a
partition range fetches only uncovered pairs for the run's tickers, unless a refresh is asked
for; so adding a ticker never refetches the others, and re-running a backfill fetches nothing.

Uncovered pairs become as few requests as possible: tickers with the same first and last
missing session share one request (one provider call per ticker batch and date range, never one
per day).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from marketflow_assets.calendar import exchange_calendar
from marketflow_assets.exchanges import listing_of
from marketflow_assets.storage.raw_lake import FetchManifest


@dataclass(frozen=True)
class FetchGroup:
    tickers: tuple[str, ...]
    first: dt.date  # first session to land
    last: dt.date  # last session to land


def covered(
    manifests: list[FetchManifest], tickers: list[str], sessions: list[dt.date]
) -> np.ndarray:
    """Boolean matrix [ticker, session]: already fetched after that session's close on the
    ticker's own exchange. A date its exchange does not trade (a London holiday in a mixed
    universe's partitions) has nothing to fetch: covered."""
    mask = np.zeros((len(tickers), len(sessions)), dtype=bool)
    if not sessions:
        return mask
    row = {t: i for i, t in enumerate(tickers)}
    days = np.array(sessions, dtype="datetime64[D]")
    mics = [listing_of(t).mic for t in tickers]
    closes_of = {mic: _own_closes(mic, days) for mic in set(mics)}  # one lookup per exchange
    closes = np.stack([closes_of[mic] for mic in mics])  # [ticker, session], NaT: no session
    mask |= np.isnat(closes)
    for manifest in manifests:
        span = manifest.request.get("landed")
        if not span:
            continue
        lo = np.searchsorted(days, np.datetime64(span["first"], "D"), side="left")
        hi = np.searchsorted(days, np.datetime64(span["last"], "D"), side="right")
        if lo >= hi:
            continue
        fetched = np.datetime64(manifest.fetched_at.astimezone(dt.UTC).replace(tzinfo=None), "ns")
        for ticker in manifest.ok_tickers:
            if ticker in row:
                mask[row[ticker], lo:hi] |= closes[row[ticker], lo:hi] <= fetched
    return mask


def _own_closes(mic: str, days: np.ndarray) -> np.ndarray:
    """Close (UTC, naive ns) of each day on exchange `mic`; NaT where it is not a session."""
    cal = exchange_calendar(mic)
    idx = np.clip(np.searchsorted(cal.sessions, days), 0, len(cal.sessions) - 1)
    return np.where(cal.sessions[idx] == days, cal.closes[idx], np.datetime64("NaT"))


def nothing_covered(tickers: list[str], sessions: list[dt.date]) -> np.ndarray:
    return np.zeros((len(tickers), len(sessions)), dtype=bool)


def watermarks(manifests: list[FetchManifest]) -> dict[tuple[str, dt.date], dt.datetime]:
    """Latest one-minute bar landed per (ticker, session): where the next poll resumes. That
    bar may have been still forming, so the next poll fetches it again (and replaces it)."""
    marks: dict[tuple[str, dt.date], dt.datetime] = {}
    for manifest in manifests:
        for obj in manifest.objects:
            session = dt.date.fromisoformat(obj.partition)
            for ticker, ts in obj.watermarks.items():
                moment = dt.datetime.fromisoformat(ts)
                if moment > marks.get((ticker, session), moment - dt.timedelta(seconds=1)):
                    marks[(ticker, session)] = moment
    return marks


def chunks(sessions: list[dt.date], max_days: int) -> list[list[dt.date]]:
    """Consecutive sessions grouped so each group spans at most `max_days` calendar days."""
    out: list[list[dt.date]] = []
    for session in sessions:
        if out and (session - out[-1][0]).days < max_days:
            out[-1].append(session)
        else:
            out.append([session])
    return out


def plan(
    manifests: list[FetchManifest], tickers: list[str], sessions: list[dt.date], *, refresh: bool
) -> tuple[list[FetchGroup], int]:
    """Requests to make, and how many (ticker, session) pairs were already covered."""
    have = (
        np.zeros((len(tickers), len(sessions)), bool)
        if refresh
        else covered(manifests, tickers, sessions)
    )
    groups: dict[tuple[int, int], list[str]] = defaultdict(list)
    for i, ticker in enumerate(tickers):
        missing = np.flatnonzero(~have[i])
        if missing.size:
            groups[(int(missing[0]), int(missing[-1]))].append(ticker)
    requests = [
        FetchGroup(tuple(ts), sessions[lo], sessions[hi]) for (lo, hi), ts in sorted(groups.items())
    ]
    return requests, int(have.sum())
