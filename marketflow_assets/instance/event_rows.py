"""Event-log rows for a batch of events, serializing each distinct event shape once.

Why: a single-run backfill of N sessions records N materializations per asset that are the same
event but for their partition and timestamp (same step, metadata, tags, message). Serializing
each one (`dagster._serdes.serialize_value`, ~1 ms with a table's column schema in the metadata)
was most of what a 10-year run spent recording them. Here the first event of a shape is
serialized with placeholders for its partition and timestamp, and every later event that is
equal to it once those two are set aside gets that text with its own values filled in. Equality
is checked on the whole event (nested tuples and dicts, identical values short-circuit), so any
other difference (a partition-specific data version, metadata, tags) falls back to a full
serialization; the result is the text `serialize_value` would write
(`marketflow_tests/test_instance_storage.py` compares them).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg
from dagster._core.events.log import EventLogEntry
from dagster._serdes import serialize_value

_PARTITION = "mf-partition-placeholder-2f9c41"
_TIMESTAMP = -7.389056098930651e-301  # repr() of this float occurs nowhere else
_TIMESTAMP_TEXT = repr(_TIMESTAMP)


def _without_partition_and_time(event: EventLogEntry) -> EventLogEntry | None:
    """The event with placeholders for its partition and timestamp; None if it has no
    materialization partition to set aside (then it is serialized as is)."""
    dagster_event = event.dagster_event
    if (
        dagster_event is None
        or dagster_event.event_type != dg.DagsterEventType.ASSET_MATERIALIZATION
    ):
        return None
    data = dagster_event.event_specific_data
    materialization = getattr(data, "materialization", None)
    if materialization is None or not isinstance(materialization.partition, str):
        return None
    # `_replace` rebuilds the tuples without re-running their validating constructors.
    return event._replace(
        timestamp=_TIMESTAMP,
        dagster_event=dagster_event._replace(
            event_specific_data=data._replace(
                materialization=materialization._replace(partition=_PARTITION)
            )
        ),
    )


def event_rows(
    events: Sequence[EventLogEntry],
    to_row: Callable[[EventLogEntry], dict[str, Any]],
    insert_time: Callable[[EventLogEntry], Any],
) -> list[dict[str, Any]]:
    """The storage's rows for `events`: `to_row` (its `_event_to_row`) for the first event of
    each shape, and for the others that row with their own serialized event, partition and
    insert time (`insert_time`, its `_event_insert_timestamp`)."""
    shapes: list[tuple[EventLogEntry, str, dict[str, Any]]] = []
    rows: list[dict[str, Any]] = []
    for event in events:
        shape = _without_partition_and_time(event)
        if shape is None:
            rows.append(to_row(event))
            continue
        # A range's events arrive grouped by step: the shape is nearly always the last one seen.
        found = next((s for s in reversed(shapes) if s[0] == shape), None)
        if found is None:
            row = to_row(event)
            rows.append(row)
            template = serialize_value(shape)
            if template.count(_PARTITION) == 1 and template.count(_TIMESTAMP_TEXT) == 1:
                shapes.append((shape, template, row))
            continue
        _, template, first_row = found
        partition = event.dagster_event.event_specific_data.materialization.partition  # type: ignore[union-attr]
        text = template.replace(_PARTITION, json.dumps(partition)[1:-1], 1)
        rows.append(
            {
                **first_row,
                "event": text.replace(_TIMESTAMP_TEXT, json.dumps(event.timestamp), 1),
                "timestamp": insert_time(event),
                "partition": partition,
            }
        )
    return rows
