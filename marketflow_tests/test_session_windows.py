"""The session partitions answer from precomputed windows exactly what Dagster's own
`DailyPartitionsDefinition` with the same exclusions answers (`session_windows.py`)."""

from __future__ import annotations

import datetime as dt
from itertools import islice

import dagster as dg
import pandas as pd
import pytest
from dagster._serdes import deserialize_value, serialize_value

from marketflow_assets.calendar import EXCHANGE_TZ
from marketflow_assets.partitions import build_sessions_partitions_def
from marketflow_assets.session_windows import (
    SessionsPartitionsDefinition,
    subset_partition_keys,
    with_precomputed_windows,
)

NOW = pd.Timestamp("2026-11-20 20:00", tz=EXCHANGE_TZ).to_pydatetime()
DAY = 86_400.0


def plain(pdef: dg.DailyPartitionsDefinition) -> dg.DailyPartitionsDefinition:
    """Dagster's own definition of the same partitions."""
    return dg.DailyPartitionsDefinition(
        start_date=pdef.start.strftime("%Y-%m-%d"),
        timezone=pdef.timezone,
        end_offset=pdef.end_offset,
        exclusions=pdef.exclusions,
    )


@pytest.fixture(
    scope="module",
    params=[
        (dt.date(2000, 1, 3), frozenset({"XNYS"})),
        (dt.date(2024, 7, 4), frozenset({"XNYS", "XLON"})),  # a London session, a NY holiday
    ],
    ids=["xnys-2000", "xnys-xlon-2024"],
)
def pair(request):
    start, exchanges = request.param
    fast = build_sessions_partitions_def(start, exchanges)
    return fast, plain(fast)


def probe_timestamps(fast: SessionsPartitionsDefinition) -> list[float]:
    """Midnights and mid-days around the start, across the history (weekends and holidays
    included) and around the table's horizon, where the iterators hand over to Dagster's."""
    table = fast.window_table
    assert table is not None
    first, last = table.starts[0], table.ends[-1]
    stamps = [first + k * DAY / 2 for k in range(-12, 12)]
    stamps += [last + k * DAY / 2 for k in range(-12, 12)]
    stamps += [first + k * 7.3 * DAY for k in range(int((last - first) / (7.3 * DAY)))]
    return stamps


def test_definition_is_dagsters_daily_definition(pair):
    fast, slow = pair
    assert isinstance(fast, SessionsPartitionsDefinition)
    assert isinstance(fast, dg.DailyPartitionsDefinition)
    assert fast == slow and hash(fast) == hash(slow)
    # A serialized subset holds a plain definition, as for any DailyPartitionsDefinition.
    subset = fast.empty_subset().with_partition_keys(["2024-07-05"]).to_serializable_subset()
    assert deserialize_value(serialize_value(subset)).get_partition_keys() == ["2024-07-05"]


def test_iterators_match_dagsters_everywhere(pair):
    fast, slow = pair
    for stamp in probe_timestamps(fast):
        assert list(islice(fast._iterate_time_windows(stamp), 8)) == list(
            islice(slow._iterate_time_windows(stamp), 8)
        ), stamp
        assert list(islice(fast._reverse_iterate_time_windows(stamp), 8)) == list(
            islice(slow._reverse_iterate_time_windows(stamp), 8)
        ), stamp
    stamp = probe_timestamps(fast)[0]
    assert list(islice(fast._iterate_time_windows(stamp, ignore_exclusions=True), 8)) == list(
        islice(slow._iterate_time_windows(stamp, ignore_exclusions=True), 8)
    )


def test_public_answers_match_dagsters(pair):
    fast, slow = pair
    with dg.partition_loading_context(effective_dt=NOW):
        keys = fast.get_partition_keys()
        assert keys == slow.get_partition_keys()
        assert fast.get_last_partition_key() == slow.get_last_partition_key()
        assert fast.get_num_partitions() == slow.get_num_partitions()
        key_range = dg.PartitionKeyRange(keys[1], keys[-2])
        assert fast.get_partition_keys_in_range(key_range) == slow.get_partition_keys_in_range(
            key_range
        )
        fast_subset = fast.empty_subset().with_partition_key_range(fast, key_range)
        slow_subset = slow.empty_subset().with_partition_key_range(slow, key_range)
        assert fast_subset.included_time_windows == slow_subset.included_time_windows
        assert list(fast_subset.get_partition_keys()) == list(slow_subset.get_partition_keys())
        # A subset with holes (every third session) merges its windows alike.
        sparse = keys[::3]
        assert (
            fast.empty_subset().with_partition_keys(sparse).included_time_windows
            == slow.empty_subset().with_partition_keys(sparse).included_time_windows
        )
        for key in (keys[0], keys[len(keys) // 2], keys[-1]):
            assert fast.time_window_for_partition_key(key) == slow.time_window_for_partition_key(
                key
            )
            assert fast.get_next_partition_key(key) == slow.get_next_partition_key(key)
            window = fast.time_window_for_partition_key(key)
            assert fast.get_prev_partition_window(window.start) == slow.get_prev_partition_window(
                window.start
            )
            assert fast.get_next_partition_window(window.end) == slow.get_next_partition_window(
                window.end
            )
    for stamp in probe_timestamps(fast)[::5]:
        # The keys as of any time (before the start, in the history, past the table's horizon)
        # and the keys of windows across the start and the horizon.
        now = dt.datetime.fromtimestamp(stamp, dt.UTC)
        for days in (1, 3, 40):
            window = dg.TimeWindow(now, now + dt.timedelta(days=days))
            assert fast.get_partition_keys_in_time_window(
                window
            ) == slow.get_partition_keys_in_time_window(window), (now, days)
        window = dg.TimeWindow(
            dt.datetime.fromtimestamp(stamp, dt.UTC),
            dt.datetime.fromtimestamp(stamp + 3 * DAY, dt.UTC),
        )
        assert fast.has_any_partitions_in_window(window) == slow.has_any_partitions_in_window(
            window
        )


def test_keys_as_of_any_time_match_dagsters(pair):
    """All keys as of a time before the start, in the history, and around the table's horizon
    (where the keys come from Dagster's iterators again)."""
    fast, slow = pair
    table = fast.window_table
    for stamp in (
        table.starts[0] - 2 * DAY,
        table.starts[0] + DAY / 2,
        table.starts[0] + 400 * DAY,
        table.ends[-1] - 3 * DAY,
        table.ends[-1] - DAY / 2,
        table.ends[-1] + DAY,
        table.ends[-1] + 30 * DAY,
    ):
        with dg.partition_loading_context(effective_dt=dt.datetime.fromtimestamp(stamp, dt.UTC)):
            assert fast.get_partition_keys() == slow.get_partition_keys(), stamp


def test_keys_of_a_deserialized_subset(pair):
    """The event log storage lists the sessions of a planned check's subset, which comes back
    from serialization with a plain definition, on precomputed windows."""
    fast, slow = pair
    with dg.partition_loading_context(effective_dt=NOW):
        keys = fast.get_partition_keys()
        subset = fast.empty_subset().with_partition_keys(keys[5:40] + keys[60:90])
        restored = deserialize_value(serialize_value(subset.to_serializable_subset()))
        assert type(restored.partitions_def) is not SessionsPartitionsDefinition
        assert list(subset_partition_keys(restored)) == keys[5:40] + keys[60:90]
    assert with_precomputed_windows(restored.partitions_def) == slow
    assert with_precomputed_windows(restored.partitions_def).window_table is not None
    static = dg.StaticPartitionsDefinition(["a", "b"]).subset_with_all_partitions()
    assert sorted(subset_partition_keys(static)) == ["a", "b"]


def test_window_table_is_computed_once_per_definition_fields():
    """Equal definitions built again (each `build_definitions`, a code reload) share one window
    table; a definition differing in any field that shapes the windows gets its own."""
    start, exchanges = dt.date(2021, 1, 4), frozenset({"XNYS"})
    first = build_sessions_partitions_def(start, exchanges)
    again = build_sessions_partitions_def(start, exchanges)
    assert first is not again and first == again
    assert again.window_table is first.window_table
    later = build_sessions_partitions_def(dt.date(2021, 1, 5), exchanges)
    mixed = build_sessions_partitions_def(start, frozenset({"XNYS", "XLON"}))
    assert later.window_table is not first.window_table
    assert later.window_table.keys == first.window_table.keys[1:]
    assert mixed.window_table is not first.window_table
    assert mixed.window_table.keys != first.window_table.keys
    other_fmt = SessionsPartitionsDefinition(
        start_date=first.start,
        fmt="%Y%m%d",
        timezone=first.timezone,
        end_offset=1,
        exclusions=first.exclusions,
    )
    assert other_fmt.window_table.keys[0] == first.window_table.keys[0].replace("-", "")
