"""Session partitions whose time windows are computed once per definition instead of per call.

Why: the session partitions are a `DailyPartitionsDefinition` with exclusions (weekends and
every weekday no exchange of the universe trades). Dagster answers every question about such a
definition (the keys of a range, the time window of a key, whether a gap between two windows
holds a partition) by starting a cron iterator merged with an iterator over the exclusions
(which sorts all the holiday timestamps first): ~0.05-0.5 ms per question. A range run asks
them per session many times over: building a range's partition subset
(`with_partition_key_range`, once per step output and input) asks "any partition between these
two windows?" for every weekend and holiday of the range, ~0.9 s per subset at 5,800 sessions;
the data versions of a step's inputs and the planned rows of its checks list every key of the
range again. A 23-year run of three tickers spent about a fifth of its time there (py-spy).

`PrecomputedWindows` makes one table of the definition's windows, from its start to its last
excluded date (the calendar's horizon, two years ahead), by running Dagster's own iterator once,
and answers the two iterators every other method is built on (`_iterate_time_windows` and
`_reverse_iterate_time_windows`) from it by binary search, and the keys of a time window or of
the whole definition from the same table's formatted keys; before the start and after the
horizon it hands over to Dagster's own methods. The windows are Dagster's own objects, so every
answer is the one Dagster gives (`test_session_windows.py` compares them against a plain
`DailyPartitionsDefinition` over the whole calendar). Serialization, equality and hashing are
Dagster's: the class adds no field, and a serialized subset or snapshot holds a plain
`TimeWindowPartitionsDefinition` as it does for any `DailyPartitionsDefinition`.
"""

from __future__ import annotations

import functools
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

import dagster as dg
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.definitions.partitions.definition.time_window import (
    TimeWindowPartitionsDefinition,
)
from dagster._core.definitions.timestamp import TimestampWithTimezone
from dagster._time import dst_safe_strftime


class WindowTable:
    """A definition's windows in order, with their start and end timestamps for bisection and
    their partition keys."""

    def __init__(self, windows: Sequence[dg.TimeWindow], keys: Sequence[str]):
        self.windows = list(windows)
        self.keys = list(keys)
        self.starts = [w.start.timestamp() for w in self.windows]
        self.ends = [w.end.timestamp() for w in self.windows]


# Window tables by the fields of the definition that determine them (`_table_key`), so a
# process that builds its definitions again (each test's `build_definitions`, a code-server
# reload) computes a table once (0.15-0.3 s) instead of once per definition object. Tables are
# read-only; a handful of deployments' settings at most live in one process.
_TABLES: dict[tuple, WindowTable | None] = {}
_MAX_TABLES = 16


def _table_key(partitions_def: TimeWindowPartitionsDefinition) -> tuple:
    """What the window table depends on, as plain values: Dagster's own `__hash__` of a
    definition serializes it, several milliseconds with thousands of exclusions."""
    end = partitions_def.end_ts
    return (
        partitions_def.start_ts.timestamp,
        partitions_def.start_ts.timezone,
        end.timestamp if end is not None else None,
        partitions_def.end_offset,
        partitions_def.cron_schedule,
        partitions_def.timezone,
        partitions_def.fmt,
        tuple(
            (e.timestamp, e.timezone) if isinstance(e, TimestampWithTimezone) else e
            for e in partitions_def.exclusions or ()
        ),
    )


class PrecomputedWindows:
    """Mixin for a `TimeWindowPartitionsDefinition` subclass (see the module docstring)."""

    @functools.cached_property
    def window_table(self) -> WindowTable | None:
        """The windows from the start to the last excluded date, or None without exclusions
        (Dagster's iterators are fast then); shared by equal definitions in the process."""
        key = _table_key(self)  # type: ignore[arg-type]
        if key in _TABLES:
            return _TABLES[key]
        table = self._build_window_table()
        if len(_TABLES) >= _MAX_TABLES:
            _TABLES.pop(next(iter(_TABLES)))  # the oldest
        _TABLES[key] = table
        return table

    def _build_window_table(self) -> WindowTable | None:
        exclusions = getattr(self, "exclusions", None) or ()
        stamps = [e.timestamp for e in exclusions if isinstance(e, TimestampWithTimezone)]
        if not stamps:
            return None
        horizon = max(stamps)
        windows = []
        for window in super()._iterate_time_windows(self.start_timestamp):  # type: ignore[misc]
            if window.start.timestamp() > horizon:
                break
            windows.append(window)
        if not windows:
            return None
        keys = [
            dst_safe_strftime(w.start, self.timezone, self.fmt, self.cron_schedule)  # type: ignore[attr-defined]
            for w in windows
        ]
        return WindowTable(windows, keys)

    def get_partition_keys_in_time_window(self, time_window: dg.TimeWindow) -> Sequence[str]:
        table = self.window_table
        start, end = time_window.start.timestamp(), time_window.end.timestamp()
        if table is None or start < table.starts[0] or end > table.starts[-1]:
            return super().get_partition_keys_in_time_window(time_window)  # type: ignore[misc]
        # The keys of the windows starting in [start, end), as Dagster's loop over the windows.
        return table.keys[bisect_left(table.starts, start) : bisect_left(table.starts, end)]

    def get_partition_keys(
        self, current_time: datetime | None = None, dynamic_partitions_store=None
    ) -> Sequence[str]:
        table = self.window_table
        with partition_loading_context(current_time, dynamic_partitions_store):
            last = self._get_last_partition_window(self._get_current_timestamp())  # type: ignore[attr-defined]
            if (
                table is None
                or last is None
                or self.start_timestamp != table.starts[0]  # type: ignore[attr-defined]
                or last.start.timestamp() > table.starts[-1]
            ):
                return super().get_partition_keys()  # type: ignore[misc]
            # Every key from the first window to the last partition window, both included.
            return table.keys[: bisect_right(table.starts, last.start.timestamp())]

    def _iterate_time_windows(
        self, start_timestamp: float, ignore_exclusions: bool = False
    ) -> Iterable[dg.TimeWindow]:
        base = super()._iterate_time_windows  # type: ignore[misc]
        table = self.window_table
        if ignore_exclusions or table is None:
            yield from base(start_timestamp, ignore_exclusions)
            return
        if start_timestamp < table.starts[0]:  # windows before the start: Dagster's
            for window in base(start_timestamp):
                if window.start.timestamp() >= table.starts[0]:
                    break
                yield window
        for i in range(bisect_left(table.starts, start_timestamp), len(table.windows)):
            yield table.windows[i]
        yield from base(max(start_timestamp, table.ends[-1]))  # after the horizon: Dagster's

    def _reverse_iterate_time_windows(
        self, end_timestamp: float, ignore_exclusions: bool = False
    ) -> Iterable[dg.TimeWindow]:
        base = super()._reverse_iterate_time_windows  # type: ignore[misc]
        table = self.window_table
        if ignore_exclusions or table is None:
            yield from base(end_timestamp, ignore_exclusions)
            return
        if end_timestamp > table.ends[-1]:  # windows after the horizon: Dagster's
            for window in base(end_timestamp):
                if window.end.timestamp() <= table.ends[-1]:
                    break
                yield window
        for i in range(bisect_right(table.ends, end_timestamp) - 1, -1, -1):
            yield table.windows[i]
        yield from base(min(end_timestamp, table.starts[0]))  # before the start: Dagster's


class SessionsPartitionsDefinition(PrecomputedWindows, dg.DailyPartitionsDefinition):
    """`DailyPartitionsDefinition` with precomputed windows: the session partitions."""


class PrecomputedTimeWindowPartitionsDefinition(PrecomputedWindows, TimeWindowPartitionsDefinition):
    """Any `TimeWindowPartitionsDefinition` with precomputed windows (`with_precomputed_windows`)."""


@functools.lru_cache(maxsize=8)
def with_precomputed_windows(
    partitions_def: TimeWindowPartitionsDefinition,
) -> TimeWindowPartitionsDefinition:
    """The same partitions as `partitions_def` answered from a window table: for definitions
    that come back from serialization as plain `TimeWindowPartitionsDefinition` (a planned
    event's partition subset in the event log storage)."""
    if isinstance(partitions_def, PrecomputedWindows) or not partitions_def.exclusions:
        return partitions_def
    return PrecomputedTimeWindowPartitionsDefinition(
        start=partitions_def.start_ts,
        fmt=partitions_def.fmt,
        end=partitions_def.end_ts,
        timezone=partitions_def.timezone,
        end_offset=partitions_def.end_offset,
        cron_schedule=partitions_def.cron_schedule,
        exclusions=partitions_def.exclusions,
    )


def subset_partition_keys(subset: dg.PartitionsSubset) -> Iterator[str]:
    """`subset.get_partition_keys()`, computed on precomputed windows for a time-window subset."""
    from dagster._core.definitions.partitions.subset.time_window import (
        TimeWindowPartitionsSubset,
    )

    if not isinstance(subset, TimeWindowPartitionsSubset):
        yield from subset.get_partition_keys()
        return
    partitions_def = with_precomputed_windows(subset.partitions_def)
    for window in subset.included_time_windows:
        yield from partitions_def.get_partition_keys_in_time_window(window)  # type: ignore[arg-type]
