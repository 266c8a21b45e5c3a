"""The freshness check's due session, by the exchange calendar, where Dagster's built-in
partition freshness would expect another one (why `checks/freshness.py` is kept; see there).

`build_time_partition_freshness_checks` expects the partition of the last partition window at
its latest deadline tick. With our session partitions (`end_offset=1`, dagster-io/dagster#33551)
that window is the *next* session on a holiday or weekend evening: the built-in would fail every
holiday. The last test pins that Dagster behaviour: when it changes, the decision is worth
revisiting."""

from __future__ import annotations

import datetime as dt

import pytest
from dagster._core.definitions.partitions.context import partition_loading_context

from marketflow_assets.calendar import EXCHANGE_TZ
from marketflow_assets.checks.freshness import due_session
from marketflow_assets.partitions import build_sessions_partitions_def

DELAY = 180


def et(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=EXCHANGE_TZ)


@pytest.mark.parametrize(
    ("now", "due"),
    [
        (et(2024, 11, 27, 18, 59), dt.date(2024, 11, 26)),  # 16:00 close + 180 min not reached
        (et(2024, 11, 27, 19, 0), dt.date(2024, 11, 27)),
        (et(2024, 11, 28, 19, 0), dt.date(2024, 11, 27)),  # Thanksgiving: nothing new is due
        (et(2024, 11, 29, 16, 0), dt.date(2024, 11, 29)),  # early close 13:00 + 180 min
        (et(2024, 11, 30, 19, 0), dt.date(2024, 11, 29)),  # Saturday
    ],
)
def test_the_due_session_follows_the_exchange_calendar(now, due):
    session, deadline = due_session(now.astimezone(dt.UTC), DELAY)
    assert session == due
    assert deadline <= now


def test_dagsters_partition_freshness_would_expect_an_unopened_session_on_a_holiday():
    partitions = build_sessions_partitions_def(dt.date(2024, 1, 2))
    expected = {}
    for day in (27, 28, 30):  # the built-in's deadline tick at 19:00 ET on those evenings
        with partition_loading_context(et(2024, 11, day, 19, 0), None):
            window = partitions.get_last_partition_window()
        expected[day] = partitions.get_partition_key_range_for_time_window(window).start
    assert expected[27] == "2024-11-27"  # a session evening: the same as ours
    assert expected[28] == "2024-11-29"  # Thanksgiving: Friday, not yet open, is expected
    # Saturday: Monday would be expected (a weekday deadline cron has no tick on weekends, but
    # a holiday is a weekday, which no cron can tell apart).
    assert expected[30] == "2024-12-02"
