"""When raw/financial_statements asks the provider again (`ingestion/statements_refresh.py`):
the pure decision on hand-built ticker states, then through the asset on the simulator."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pandas as pd
import pytest

from marketflow_assets.ingestion.statements_refresh import (
    STATE_COLUMNS,
    RefreshPolicy,
    decide,
    release_calendar,
    routine_period,
    routine_slot,
    weekday_number,
)
from marketflow_assets.sources.simulator import SimulatorSource
from marketflow_assets.sources.simulator_fundamentals import SimulatorFundamentals
from marketflow_tests.helpers import make_settings, materialize, output_metadata

NOW = pd.Timestamp("2024-06-10 22:00", tz="UTC")  # a Monday evening, provider clock
POLICY = RefreshPolicy(max_age_days=30, release_watch_days=7)
DAY = pd.Timedelta(days=1)


def state(ticker: str, **values) -> pd.DataFrame:
    row = {"ticker": ticker, **dict.fromkeys(STATE_COLUMNS[1:], pd.NaT)}
    row.update({k: pd.Timestamp(v) for k, v in values.items()})
    frame = pd.DataFrame([row], columns=list(STATE_COLUMNS))
    for column in STATE_COLUMNS[1:]:
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def reason(frame: pd.DataFrame, now: pd.Timestamp = NOW, **kwargs) -> str:
    return decide(frame, now, POLICY, **kwargs).iloc[0]


def test_new_and_forced_tickers_are_fetched():
    assert reason(state("T")) == "new"
    fresh = state("T", last_attempt=NOW - DAY, latest_period_end="2024-03-31")
    assert reason(fresh) == ""
    assert reason(fresh, forced=True) == "forced"


def test_a_listed_release_is_fetched_once_after_it():
    release = NOW - pd.Timedelta(hours=5)  # announced after today's close
    before = state(
        "T",
        last_attempt=NOW - 3 * DAY,
        next_release=release,
        last_release="2024-02-01",
        latest_period_end="2023-12-31",
    )
    assert reason(before) == "release_due"
    assert reason(before, now=release - pd.Timedelta(hours=1)) == ""  # not yet
    # Fetched after it: the next document lists the following release, nothing is due.
    after = state(
        "T",
        last_attempt=NOW,
        next_release="2024-08-01",
        last_release=release,
        latest_period_end="2024-03-31",
    )
    assert reason(after, now=NOW + DAY) == ""


def test_statements_that_lag_their_release_are_asked_daily_for_the_watch_days():
    lagging = {"last_release": NOW - 2 * DAY, "latest_period_end": "2023-12-31"}  # lacks Q1
    assert reason(state("T", last_attempt=NOW - DAY, **lagging)) == "release_pending"
    assert reason(state("T", last_attempt=NOW - pd.Timedelta(hours=2), **lagging)) == ""  # today
    later = NOW + 8 * DAY  # past the watch: routine refreshes only
    assert reason(state("T", last_attempt=later - DAY, **lagging), now=later) == ""
    shown = {"last_release": NOW - 2 * DAY, "latest_period_end": "2024-03-31"}
    assert reason(state("T", last_attempt=NOW - DAY, **shown)) == ""


def test_an_estimated_release_is_watched_from_before_it_until_it_shows():
    last = pd.Timestamp("2024-05-08 20:30", tz="UTC")
    estimate = last + pd.Timedelta(days=91)
    known = {"last_release": last, "latest_period_end": "2024-03-31"}
    for now, expected in [
        (estimate - 8 * DAY, ""),  # before the watch
        (estimate - 6 * DAY, "release_due"),
        (estimate + 20 * DAY, "release_due"),  # an annual release comes later
    ]:
        assert reason(state("T", last_attempt=now - DAY, **known), now=now) == expected, now
    stale = state("T", last_attempt=estimate + 29 * DAY, **known)
    assert reason(stale, now=estimate + 31 * DAY) == ""  # past the watch, asked 2 days ago
    # Once fetched with the new quarter, the estimate moves a quarter on.
    moved = state("T", last_attempt=estimate, last_release=estimate, latest_period_end="2024-06-30")
    assert reason(moved, now=estimate + DAY) == ""


def test_routine_refreshes_spread_the_universe_over_weekday_slots():
    """Right after one bulk fetch of the universe, daily runs on weekdays ask each ticker once
    every ~max_age_days (21 weekdays for 30), about 1/21 of the universe a day, never a herd;
    a ticker missed on its slot is overdue a week after max_age_days."""
    tickers = [f"X{i:04d}" for i in range(3000)]
    frame = pd.concat([state(t, last_attempt=NOW - DAY) for t in tickers], ignore_index=True)
    per_day = []
    for day in range(120):
        now = NOW + day * DAY
        if now.dayofweek >= 5:
            continue
        reasons = decide(frame, now, POLICY)
        assert set(reasons.unique()) <= {"", "routine"}
        asked = frame["ticker"].isin(reasons[reasons != ""].index)
        frame.loc[asked, "last_attempt"] = now
        per_day.append(int(asked.sum()))
        assert (now - frame["last_attempt"] <= pd.Timedelta(days=POLICY.max_age_days + 2)).all()
    share = len(tickers) / 21
    assert 0.8 * share < min(per_day) <= max(per_day) < 1.25 * share
    assert reason(state("T", last_attempt=NOW - 36 * DAY)) in {"routine", ""}
    assert reason(state("T", last_attempt=NOW - 38 * DAY)) in {"routine", "overdue"}


def test_policy_bounds_are_checked():
    with pytest.raises(ValueError, match="max_age_days must be >= 1"):
        RefreshPolicy(max_age_days=0)


def test_the_calendar_comes_from_the_document_as_served():
    fetched = dt.datetime(2024, 6, 7, 22, tzinfo=dt.UTC)
    doc = SimulatorFundamentals(SimulatorSource(seed=0)).statements("KO", fetched)
    calendar = release_calendar(doc, fetched)
    assert calendar["last_release"] == pd.Timestamp("2024-05-08 16:30", tz="America/New_York")
    assert calendar["latest_period_end"] == pd.Timestamp("2024-03-31", tz="UTC")
    listed = {**doc, "earnings_dates": ["2024-07-30T16:30:00-04:00", *doc["earnings_dates"]]}
    assert release_calendar(listed, fetched)["next_release"] == pd.Timestamp(
        "2024-07-30 20:30", tz="UTC"
    )
    unreadable = release_calendar(
        {"format": "yahoo-statements/1", "earnings_dates": ["x"]}, fetched
    )
    assert all(pd.isna(v) for v in unreadable.values())  # no calendar: routine refreshes only


@pytest.mark.slow  # four small runs of raw/financial_statements
def test_the_asset_asks_only_what_the_policy_says(tmp_path):
    first = dt.datetime(2024, 3, 1, 22, tzinfo=dt.UTC)
    base = make_settings(tmp_path / "home", tickers="KO,CSCO,MSFT", simulator_now=first)
    key = ["raw", "financial_statements"]

    def run(now: dt.datetime, **config) -> dict:
        settings = dataclasses.replace(base, simulator_now=now)
        ops = {"raw__financial_statements": {"config": config}}
        result = materialize(settings, select="raw/financial_statements", run_config={"ops": ops})
        assert result.success
        return output_metadata(result, key)

    meta = run(first)
    assert (meta["tickers_fetched"], meta["fetch_reasons"]) == (3, {"new": 3})
    # The next evening: no release due; only the tickers whose routine slot is that weekday.
    nxt = first + dt.timedelta(days=1)
    period = routine_period(30)
    slots = routine_slot(pd.Series(["KO", "CSCO", "MSFT"]), period)
    on_slot = int((slots == weekday_number(pd.Timestamp(nxt)) % period).sum())
    meta = run(nxt)
    assert meta["tickers_fetched"] == on_slot
    assert meta["fetch_reasons"] == ({"routine": on_slot} if on_slot else {})
    # A quarter later every ticker has released since: all asked, for that reason.
    meta = run(first + dt.timedelta(days=98))
    assert meta["fetch_reasons"] == {"release_due": 3}
    assert run(first + dt.timedelta(days=98), refresh=True)["fetch_reasons"] == {"forced": 3}
