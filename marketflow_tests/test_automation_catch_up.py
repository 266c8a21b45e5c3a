"""`daily_catch_up`'s decision and cursor, without an instance: every state of `decide`, the
cursors earlier releases wrote, and cursors that cannot be read. The sensor end to end (instance
queries, tags) is in test_automation_schedules.py."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from marketflow_assets.automation.catch_up import (
    RETRY_BASE_SECONDS,
    RETRY_MAX_SECONDS,
    ActiveRun,
    CatchUpCursor,
    CatchUpCursorError,
    CatchUpStatus,
    Launch,
    Wait,
    decide,
    retry_delay_seconds,
)

D = dt.date
# The week after Thanksgiving 2024: 26, 27, 29 Nov (28 is the holiday), 2, 3, 4 Dec.
WINDOW = [D(2024, 11, 26), D(2024, 11, 27), D(2024, 11, 29), D(2024, 12, 2), D(2024, 12, 3)]
NOW = 1_733_270_400.0  # epoch seconds; only differences to `requested_at` matter
FRESH = CatchUpCursor()


def loaded(*done: dt.date, anchor: dt.date = WINDOW[0], **kw) -> CatchUpStatus:
    return CatchUpStatus(anchor=anchor, done=frozenset(done), **kw)


def test_an_empty_window_waits():
    decision = decide([], loaded(), FRESH, NOW)
    assert decision == Wait("no closed session in the lookback window yet")


def test_a_deployment_never_loaded_is_not_initialized():
    decision = decide(WINDOW, CatchUpStatus(anchor=None), FRESH, NOW)
    assert isinstance(decision, Wait) and "initial history backfill" in decision.reason


def test_nothing_missing_waits_naming_the_window():
    decision = decide(WINDOW, loaded(*WINDOW), FRESH, NOW)
    assert decision == Wait(
        "every daily asset is materialized for 2024-11-26..2024-12-03 (5 sessions)"
    )


def test_missing_sessions_are_one_range_from_first_to_last_missing():
    decision = decide(WINDOW, loaded(WINDOW[0], WINDOW[2], WINDOW[4]), FRESH, NOW)
    assert isinstance(decision, Launch)
    assert (decision.first, decision.last) == (D(2024, 11, 27), D(2024, 12, 2))
    # Only the missing ones are counted; 29 Nov (done) is inside the range, and costs nothing.
    assert decision.missing == (D(2024, 11, 27), D(2024, 12, 2))
    assert decision.cursor == CatchUpCursor(1, "2024-11-27..2024-12-02", 1, NOW)
    assert decision.run_key == "catch_up:1"


def test_sessions_before_the_first_load_are_not_missing():
    # Loaded from 29 Nov on (the history backfill started there): 26 and 27 Nov are not asked.
    status = loaded(WINDOW[2], WINDOW[3], anchor=WINDOW[2])
    decision = decide(WINDOW, status, FRESH, NOW)
    assert isinstance(decision, Launch) and decision.missing == (D(2024, 12, 3),)


@pytest.mark.parametrize(
    ("run_span", "waits"),
    [
        ((D(2024, 11, 27), D(2024, 11, 27)), True),  # inside the missing range
        ((D(2024, 11, 1), D(2024, 11, 29)), True),  # overlaps its start
        ((D(2024, 12, 3), D(2024, 12, 10)), True),  # overlaps its end
        ((D(2024, 11, 1), D(2024, 11, 26)), False),  # before: unrelated
    ],
)
def test_a_run_in_progress_over_the_missing_range_is_waited_for(run_span, waits):
    run = ActiveRun("r1", "started", *run_span)
    status = loaded(WINDOW[0], runs=(run,))
    decision = decide(WINDOW, status, FRESH, NOW)
    if waits:
        assert isinstance(decision, Wait)
        assert "run r1" in decision.reason and "waiting for it" in decision.reason
    else:
        assert isinstance(decision, Launch)


def test_a_backfill_in_progress_is_waited_for():
    decision = decide(WINDOW, loaded(backfills=("bf1", "bf2")), FRESH, NOW)
    assert isinstance(decision, Wait) and "bf1, bf2" in decision.reason


def test_a_range_still_missing_is_retried_with_a_growing_delay():
    span = "2024-11-26..2024-12-03"
    after_first = CatchUpCursor(7, span, 1, NOW)
    too_soon = decide(WINDOW, loaded(), after_first, NOW + RETRY_BASE_SECONDS - 1)
    assert isinstance(too_soon, Wait) and "next attempt in 1 s" in too_soon.reason
    retry = decide(WINDOW, loaded(), after_first, NOW + RETRY_BASE_SECONDS)
    assert isinstance(retry, Launch)
    assert retry.cursor == CatchUpCursor(8, span, 2, NOW + RETRY_BASE_SECONDS)
    assert retry.run_key == "catch_up:8"  # a new key: Dagster would drop a repeated one
    # The second retry waits twice as long; the delay stops growing at RETRY_MAX_SECONDS.
    assert retry_delay_seconds(2) == 2 * RETRY_BASE_SECONDS
    assert retry_delay_seconds(30) == RETRY_MAX_SECONDS
    after_second = retry.cursor
    assert isinstance(
        decide(WINDOW, loaded(), after_second, after_second.requested_at + 3599), Wait
    )


def test_a_different_range_is_requested_at_once():
    # The last request was for another range (it succeeded; a newer session is missing now).
    cursor = CatchUpCursor(3, "2024-11-01..2024-11-05", 4, NOW)
    decision = decide(WINDOW, loaded(*WINDOW[:4]), cursor, NOW)
    assert isinstance(decision, Launch)
    assert decision.cursor == CatchUpCursor(4, "2024-12-03..2024-12-03", 1, NOW)


def test_the_cursor_round_trips_and_reads_the_unversioned_format():
    cursor = CatchUpCursor(12, "2024-11-27..2024-12-04", 2, 1_700_000_000.5)
    assert CatchUpCursor.from_json(cursor.to_json()) == cursor
    assert json.loads(cursor.to_json())["version"] == CatchUpCursor.VERSION
    # What the sensor wrote before the cursor had a version: same numbering, same back-off.
    old = (
        '{"n": 12, "range": "2024-11-27..2024-12-04", "attempts": 2, "requested_at": 1700000000.5}'
    )
    assert CatchUpCursor.from_json(old) == cursor
    assert CatchUpCursor.from_json(None) == CatchUpCursor.from_json("") == FRESH
    # A cursor set by hand to carry on the numbering.
    assert CatchUpCursor.from_json('{"n": 40}') == CatchUpCursor(requests=40)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("catch_up:3", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"version": 2, "n": 1}', "version 2"),
        ('{"n": "many"}', "wrong type"),
        ('{"n": 1, "requested_at": null}', "wrong type"),
    ],
)
def test_an_unreadable_cursor_fails_saying_how_to_recover(text, why):
    with pytest.raises(CatchUpCursorError, match=why) as failure:
        CatchUpCursor.from_json(text)
    assert "Set cursor" in str(failure.value) and text in str(failure.value)
