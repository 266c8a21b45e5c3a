"""The simulator shares work across the tickers of a request (the market and sector factor
draws, one frame for the whole payload) without changing a single served number."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from marketflow_assets.sources.base import BarsQuery
from marketflow_assets.sources.simulator import SimulatorFaults, SimulatorSource, _round_like_numpy

CLOCK = dt.datetime(2024, 6, 7, 22, tzinfo=dt.UTC)
US = ("AAA", "BBB", "CCC", "DDD")


def test_a_request_serves_what_each_ticker_alone_would():
    """The whole request's frame (built column by column) equals single-ticker requests made
    in fresh sources, concatenated: same rows, order, values and dtypes."""
    query = BarsQuery(US, dt.date(2023, 1, 3), dt.date(2024, 6, 7), "1d")
    together = SimulatorSource(seed=4, clock=CLOCK).fetch_bars(query).frame
    alone = [
        SimulatorSource(seed=4, clock=CLOCK)
        .fetch_bars(BarsQuery((t,), query.start, query.end, "1d"))
        .frame
        for t in US
    ]
    pd.testing.assert_frame_equal(together, pd.concat(alone, ignore_index=True), check_exact=True)
    assert list(together["Ticker"].unique()) == list(US)


def test_mixed_exchanges_and_faults_keep_their_per_ticker_frames():
    """Tickers on different exchange zones, or rows rewritten by faults, take the frame path."""
    query = BarsQuery(("AAA", "VOD.L"), dt.date(2024, 5, 1), dt.date(2024, 6, 7), "1d")
    frame = SimulatorSource(seed=4, clock=CLOCK).fetch_bars(query).frame
    assert set(frame["Ticker"]) == {"AAA", "VOD.L"} and len(frame) > 40
    faulty = SimulatorSource(seed=4, clock=CLOCK, faults=SimulatorFaults.parse("duplicates=0.5"))
    payload = faulty.fetch_bars(BarsQuery(US, query.start, query.end, "1d")).frame
    assert payload.duplicated(["Ticker", "Date"]).any()


def test_history_does_not_depend_on_what_the_source_was_asked_before():
    """The market and sector draws are cached per source and grown on demand: a history asked
    after a longer (or shorter) one equals the history a fresh source gives."""
    used = SimulatorSource(seed=2)
    for until in (dt.date(2026, 11, 20), dt.date(2004, 2, 2), dt.date(2024, 6, 7)):
        for ticker in ("AAA", "BBB", "AAPL"):
            fresh = SimulatorSource(seed=2).history(ticker, until)
            again = used.history(ticker, until)
            for name in ("sessions", "open", "high", "low", "close", "volume", "dividend", "split"):
                np.testing.assert_array_equal(getattr(again, name), getattr(fresh, name))


def test_dividend_amounts_round_as_numpy_rounds():
    """Amounts are rounded on Python floats exactly as `round(np.float64(x), 4)` rounds them
    (scale, round half to even, scale back), which differs from Python's decimal `round`."""
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.uniform(0, 5, 20_000), [0.00005, 0.00015, 0.12345, 2.675]])
    for x in values:
        assert _round_like_numpy(float(x), 4) == round(np.float64(x), 4)


def test_a_short_request_serves_the_long_requests_rows_of_its_range():
    """Asked at the same clock, a one-week request gives exactly the rows a 10-year request
    gives for that week: the history behind it is the same, whatever range is served."""
    week = (dt.date(2024, 6, 3), dt.date(2024, 6, 7))
    long = SimulatorSource(seed=4, clock=CLOCK).fetch_bars(
        BarsQuery(US, dt.date(2014, 6, 9), week[1], "1d")
    )
    short = SimulatorSource(seed=4, clock=CLOCK).fetch_bars(BarsQuery(US, *week, "1d"))
    dates = long.frame["Date"].dt.date
    in_week = long.frame[(dates >= week[0]) & (dates <= week[1])].reset_index(drop=True)
    assert len(short.frame) == 5 * len(US)
    pd.testing.assert_frame_equal(short.frame, in_week, check_exact=True)


def test_closes_are_the_historys_closes_and_actions():
    """`closes` (what the statements price from) skips the other bars' draws but gives the very
    closes, dividends and splits of `history`."""
    source = SimulatorSource(seed=3, clock=CLOCK)
    for ticker in ("AAPL", "NVDA", "VOD.L", "BBB"):
        history = source.history(ticker, CLOCK.date())
        closes = source.closes(ticker, CLOCK.date())
        assert len(closes) == len(history) > 1000
        for name in ("sessions", "close", "dividend", "split"):
            assert getattr(closes, name).tobytes() == getattr(history, name).tobytes(), name
    assert (source.history("AAPL", CLOCK.date()).split != 1).any()  # the splits were exercised


def test_an_old_window_is_served_as_of_the_later_splits_and_dividends():
    """Bars priced for a short window alone carry the same as-of factors (every split and
    dividend between the window and the clock) as the same rows of a request from listing:
    windows on and just before ex-dates, an old month, and the last session, also while it
    is still forming."""
    tickers = ("AAPL", "NVDA", "BBB", "7203.T", "FOO.L")
    served = 0
    for clock in (CLOCK, dt.datetime(2024, 6, 7, 15, 7, 30, tzinfo=dt.UTC)):
        source = SimulatorSource(seed=5, clock=clock)
        actions = source.corporate_actions("AAPL", clock.date())
        split_day = actions.loc[actions["split_ratio"] != 1, "ex_date"].iloc[0]
        dividend_day = actions.loc[actions["dividend"] > 0, "ex_date"].iloc[-1]
        windows = [(day, day) for day in (split_day, dividend_day, clock.date())] + [
            (day - dt.timedelta(days=3), day - dt.timedelta(days=1))
            for day in (split_day, dividend_day)
        ]
        for group in (tickers[:3], tickers[3:4], tickers[4:]):  # one time zone per frame
            full = source.fetch_bars(BarsQuery(group, dt.date(1990, 1, 1), clock.date(), "1d"))
            dates = full.frame["Date"].dt.date
            for first, last in [*windows, (dt.date(2000, 3, 1), dt.date(2000, 3, 31))]:
                short = SimulatorSource(seed=5, clock=clock).fetch_bars(
                    BarsQuery(group, first, last, "1d")
                )
                rows = full.frame[(dates >= first) & (dates <= last)].reset_index(drop=True)
                if rows.empty:  # no session of this exchange in the window
                    assert short.frame.empty
                    continue
                pd.testing.assert_frame_equal(short.frame, rows, check_exact=True)
                served += len(rows)
    assert served > 50
