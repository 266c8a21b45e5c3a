"""Event rows of a batch, with the per-partition asset events of one output serialized once.

A range run records one materialization per asset and session (`execute_step` builds them from
one output: same asset, metadata objects, tags, step, message), and serializing each of them
(`serialize_value`, ~7 KB of JSON with the column schema) was a third of a 10-year run's time
(py-spy, 100 tickers x 2,520 sessions). Those events differ only in their partition and
timestamp, so `event_rows` serializes the first of a run of such events with placeholders for
both and fills them in for the others: the same JSON text, byte for byte, as `serialize_value`
would give each event.

A batch's range materializations but the latest two are stored compacted (without the step's
metadata, `batched_events.py`): the template of such a run is made from the compacted first
event, so the compacted form of the others is never built; its text is also slimmed
(`slim_json.py`: without the fields that restate their class's defaults), once per template.

Two events share a template only if everything else is the same: the same metadata value
*objects* (equal values of different types, 1 and 1.0, would serialize differently), equal tags,
step, message, level and run. A template is used only once its rendering of its own event equals
that event's `serialize_value`, and only if each placeholder occurs exactly once in it;
otherwise the events are serialized one by one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Container, Sequence
from typing import Any

import dagster as dg
from dagster._core.events import AssetObservationData, StepMaterializationData
from dagster._core.events.log import EventLogEntry
from dagster._serdes import serialize_value

from marketflow_assets.instance.slim_json import slim

_PARTITION = f"marketflow-partition-{uuid.uuid4().hex}"
_TIMESTAMP = float.fromhex("-0x1.5eed1234abcdfp-1000")  # never a real event time
_PARTITION_JSON = json.dumps(_PARTITION)
_TIMESTAMP_JSON = repr(_TIMESTAMP)


def _asset_event(entry: EventLogEntry) -> dg.AssetMaterialization | dg.AssetObservation | None:
    """The partitioned materialization or observation an entry records, else None."""
    event = entry.dagster_event
    if event is None:
        return None
    data = event.event_specific_data
    if isinstance(data, StepMaterializationData) and not data.asset_lineage:
        asset_event = data.materialization
    elif isinstance(data, AssetObservationData):
        asset_event = data.asset_observation
    else:
        return None
    return asset_event if isinstance(asset_event.partition, str) else None


def _signature(entry: EventLogEntry, asset_event) -> tuple:
    """What must be identical for two entries to serialize alike but for partition and time."""
    event = entry.dagster_event
    assert event is not None
    return (
        type(event.event_specific_data),
        type(asset_event),
        asset_event.asset_key,
        asset_event.description,
        tuple((key, id(value)) for key, value in asset_event.metadata.items()),
        tuple(sorted((asset_event.tags or {}).items())),
        event.event_type_value,
        event.job_name,
        event.step_handle,
        event.node_handle,
        event.step_kind_value,
        tuple(sorted((event.logging_tags or {}).items())),
        event.message,
        event.pid,
        entry.error_info,
        entry.level,
        entry.user_message,
        entry.run_id,
        entry.step_key,
        entry.job_name,
    )


def _with_placeholders(entry: EventLogEntry, asset_event) -> EventLogEntry:
    event = entry.get_dagster_event()
    placeholder = asset_event._replace(partition=_PARTITION)
    data = event.event_specific_data
    if isinstance(data, StepMaterializationData):
        data = data._replace(materialization=placeholder)
    else:
        data = data._replace(asset_observation=placeholder)  # type: ignore[union-attr]
    return entry._replace(
        timestamp=_TIMESTAMP, dagster_event=event._replace(event_specific_data=data)
    )


def _slim_serialize(entry: EventLogEntry) -> str:
    return slim(serialize_value(entry))


class _Template:
    """The serialized text of entries alike `entry`, placeholders for partition and time; made
    when a second alike entry comes (a lone event costs no more than its own serialization)."""

    def __init__(
        self, entry: EventLogEntry, asset_event, signature: tuple, source=None, slimmed=False
    ):
        self.signature = signature
        # Holds the entry (and the one it was compacted from), so the metadata objects whose ids
        # are in the signature stay alive.
        self.entry, self.asset_event, self.source = entry, asset_event, source
        self._serialize = _slim_serialize if slimmed else serialize_value
        self.own = self._serialize(entry)  # the first entry's text: also the reference
        self._text: str | None = None
        self._made = False

    @property
    def text(self) -> str | None:
        if not self._made:
            self._made = True
            text = self._serialize(_with_placeholders(self.entry, self.asset_event))
            if text.count(_PARTITION_JSON) == 1 and text.count(_TIMESTAMP_JSON) == 1:
                self._text = text
                if self.render(self.entry, self.asset_event) != self.own:
                    self._text = None
        return self._text

    def render(self, entry: EventLogEntry, asset_event) -> str:
        assert self._text is not None
        return self._text.replace(_PARTITION_JSON, json.dumps(asset_event.partition)).replace(
            _TIMESTAMP_JSON, repr(entry.timestamp)
        )


def event_rows(
    entries: Sequence[EventLogEntry],
    to_row: Callable[[EventLogEntry], dict[str, Any]],
    insert_timestamp: Callable[[EventLogEntry], Any],
    compact: Container[int] = (),
    compacted: Callable[[EventLogEntry], EventLogEntry] | None = None,
) -> list[dict[str, Any]]:
    """`to_row(entry)` of each entry (the storage's `_event_to_row`, whose timestamp column is
    `insert_timestamp(entry)`), with the serialized `event` of runs of alike partitioned asset
    events rendered from a template.

    The entries at the positions in `compact` are stored as `compacted(entry)`, a function of
    the entry that keeps its partition and timestamp: the template is made from the compacted
    first entry of a run of alike ones, so the others are never built as objects."""
    rows: list[dict[str, Any]] = []
    template: _Template | None = None
    key_text: dict[dg.AssetKey, str] = {}  # a range's events share their asset key
    for i, entry in enumerate(entries):
        shrink = compacted is not None and i in compact
        asset_event = _asset_event(entry)
        if asset_event is None:
            if shrink:
                row = to_row(compacted(entry))  # type: ignore[misc]
                rows.append({**row, "event": slim(row["event"])})
            else:
                rows.append(to_row(entry))
            continue
        signature = (_signature(entry, asset_event), shrink)
        if template is None or template.signature != signature:
            stored = compacted(entry) if shrink else entry  # type: ignore[misc]
            template = _Template(
                stored, _asset_event(stored), signature, source=entry, slimmed=shrink
            )
            serialized = template.own
        elif template.text is None:
            serialized = (
                _slim_serialize(compacted(entry))  # type: ignore[misc]
                if shrink
                else serialize_value(entry)
            )
        else:
            serialized = template.render(entry, asset_event)
        event = entry.get_dagster_event()
        # The row `SqlEventLogStorage._event_to_row` builds, with `serialized` as its event.
        rows.append(
            {
                "run_id": entry.run_id,
                "event": serialized,
                "dagster_event_type": event.event_type_value,
                "timestamp": insert_timestamp(entry),
                "step_key": event.step_key,
                "asset_key": key_text.get(asset_event.asset_key)
                or key_text.setdefault(asset_event.asset_key, asset_event.asset_key.to_string()),
                "partition": asset_event.partition,
            }
        )
    return rows
