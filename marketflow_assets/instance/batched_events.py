"""Event log storages whose `store_event_batch` writes a batch in one transaction per table.

Why: a single-run backfill of 10 years records one materialization per asset and session and,
for every partitioned check, one planned row and one verdict per session: tens of thousands of
events. Dagster hands such events to `EventLogStorage.store_event_batch` when
`DAGSTER_EVENT_BATCH_SIZE` > 0 (dagster-io/dagster#19829, PR #19862), but in Dagster 1.13 only
dagster-postgres implements it, and only for materializations and observations; SQLite and the
in-memory storage store the batch one event at a time (several connections and commits each,
an fsync per commit on SQLite). Planned check rows are also written once per partition with the
whole serialized event, partition subset included (~19 KB each with the session calendar).

`BatchedEventWrites.store_event_batch` handles batches of one run made of materializations,
observations, planned materializations, planned checks and check evaluations:

- the event rows go in with one multi-row INSERT (on SQLite: into the run's shard, and the
  asset and check events mirrored into the index shard, as `store_event` does; through sqlite3's
  `executemany`, `sqlite_rows.py`), the per-partition asset events of one output serialized
  once (`event_rows.py`);
- asset events: their tags in one INSERT, the asset's row updated once per asset and event
  type with the latest event (as dagster-postgres does);
- planned checks: one row per partition without an event (the row's own partition says
  which; the planned event, with the partition subset, is in the log once);
- check evaluations: the run's planned rows for those partitions updated to the verdict in one
  executemany; a passing evaluation marked `COVERS_PLANNED_SESSIONS` (the sessions of a range
  that passed) then resolves the check's remaining planned rows in SQL (three statements), each
  row getting its session's latest materialization; evaluations without a planned row are inserted; a
  verdict without partition also
  resolves the run's planned rows of that check still open (an unpartitioned check of a range
  run, which Dagster 1.13 plans once per partition of the run but evaluates once).

`store_event` routes a run's single check events through the same path.

What a range run stores is also kept small, so a 10-year backfill's instance stays under 200 MB
instead of gigabytes (`make bench BENCH_ARGS="--instance sqlite"` reports its size):

- the materializations of one asset in a batch (a range's sessions) all repeat the step's
  metadata, which describes the whole range (rows written, table, scope, column schema: 3-10 KB
  per event): it stays on the last two, the asset's latest materializations (shown on its page,
  and compared by Dagster's `column_schema_change` check); the others record the session, run,
  time, data versions and tags without it, nor the logging tags and handles only the run's log
  view needs;
- the sessions a covering verdict resolves each get a slim copy of it (the evaluation without
  the log message, logging tags and handles, which only the run's own event row needs);
- an unpartitioned check of a range run (dbt tests, `column_schema_change`) keeps the single
  unpartitioned row of its verdict, as in a one-session run: the per-session rows Dagster planned
  for it are dropped instead of each getting a copy of the verdict;
- those per-session copies (compacted materializations, covering verdicts) are stored without the
  fields that restate their class's defaults (`slim_json.py`: ~20% smaller, read back equal);
  covered sessions' planned rows are rewritten with the verdict rather than grown in place;
- on SQLite, new files get 16 KB pages and auto_vacuum (`SQLITE_PAGE_SIZE`).

Anything else falls back to Dagster's own per-event path. The batch writer uses the storage's
SQLAlchemy tables and helpers (`_event_to_row`, `_store_asset_event_tags`, `_store_asset_event`)
as dagster-postgres' own `store_event_batch` does; `marketflow_tests/test_instance_storage.py`
checks that what it writes reads back through Dagster's public API like per-event writes.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as db
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluation,
    AssetCheckEvaluationPlanned,
)
from dagster._core.events import AssetObservationData, StepMaterializationData
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.event_log.in_memory import InMemoryEventLogStorage
from dagster._core.storage.event_log.schema import (
    AssetCheckExecutionsTable,
    AssetEventTagsTable,
    SqlEventLogStorageTable,
)
from dagster._serdes import serialize_value
from dagster._serdes.config_class import ConfigurableClassData

from marketflow_assets.instance import sqlite_rows
from marketflow_assets.instance.event_rows import event_rows
from marketflow_assets.instance.pool_slots import ExclusivePoolSlots
from marketflow_assets.instance.slim_json import slim
from marketflow_assets.session_windows import subset_partition_keys

T = dg.DagsterEventType
COVERS_PLANNED_SESSIONS = "sessions_covered"
"""Metadata key of a passing evaluation without partition that stands for every session of its
check the run still has planned (the sessions of a range that passed): written as one UPDATE of
those rows, each keeping its session and getting its own latest materialization, instead of one
event per session (`checks/per_session.py`)."""
ASSET_TYPES = {T.ASSET_MATERIALIZATION, T.ASSET_OBSERVATION, T.ASSET_MATERIALIZATION_PLANNED}
CHECK_TYPES = {T.ASSET_CHECK_EVALUATION, T.ASSET_CHECK_EVALUATION_PLANNED}
BATCHED_TYPES = ASSET_TYPES | CHECK_TYPES
_FEW_PARTITIONS = 500  # up to this many, a batch's verdicts look up their planned rows by key


class BatchedEventWrites:
    """Mixin for `SqlEventLogStorage` subclasses (see the module docstring)."""

    mirrors_to_index_shard = False  # SQLite: events live in a per-run shard plus the index

    def store_event(self, event: EventLogEntry) -> None:
        # Check events of a run take the batch path too, so every verdict resolves planned rows
        # the same way (see `_store_check_evaluations`).
        if event.dagster_event_type in CHECK_TYPES and event.run_id:
            self.store_event_batch([event])
        else:
            super().store_event(event)  # type: ignore[misc]

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        types = {e.dagster_event_type for e in events}
        if (
            not events
            or not types <= BATCHED_TYPES
            or len({e.run_id for e in events}) != 1
            or not events[0].run_id
        ):
            super().store_event_batch(events)  # type: ignore[misc]
            return
        rows = event_rows(
            events,
            self._event_to_row,  # type: ignore[attr-defined]
            self._event_insert_timestamp,  # type: ignore[attr-defined]
            compact=_range_materializations_to_compact(events),
            compacted=_compacted,
        )
        if self.mirrors_to_index_shard:  # SQLite: the run's own shard holds every event
            with self.run_connection(events[0].run_id) as conn:  # type: ignore[attr-defined]
                _insert(conn, SqlEventLogStorageTable, rows)
        # One transaction for the event rows and everything indexed from them: if any part
        # fails, none of it is kept and Dagster falls back to storing the events one by one.
        with self.index_transaction() as conn:  # type: ignore[attr-defined]
            ids = self._insert_event_rows(conn, rows)
            pairs = list(zip(events, ids, strict=True))
            asset_events = [(e, i) for e, i in pairs if e.dagster_event_type in ASSET_TYPES]
            if asset_events:
                stamps = {i: row["timestamp"] for i, row in zip(ids, rows, strict=True)}
                self._store_asset_events(conn, asset_events, stamps)
            planned = [
                (e, i) for e, i in pairs if e.dagster_event_type == T.ASSET_CHECK_EVALUATION_PLANNED
            ]
            if planned:
                self._store_planned_checks(conn, planned)
            evaluations = [
                (e, i) for e, i in pairs if e.dagster_event_type == T.ASSET_CHECK_EVALUATION
            ]
            if evaluations:
                # The verdict rows hold the same serialized event as the event rows: reuse it.
                serialized = {i: row["event"] for i, row in zip(ids, rows, strict=True)}
                self._store_check_evaluations(conn, evaluations, serialized)

    # -- event rows ---------------------------------------------------------------------------
    def _insert_event_rows(self, conn, rows: list[dict[str, Any]]) -> list[int]:
        if sqlite_rows.applies(conn, SqlEventLogStorageTable):
            sqlite_rows.insert(conn, SqlEventLogStorageTable, rows)
            return sqlite_rows.inserted_ids(conn, SqlEventLogStorageTable, len(rows))
        # executemany + RETURNING: SQLAlchemy's "insertmanyvalues" sends multi-row INSERTs and
        # returns the ids in the order of the rows.
        result = conn.execute(
            SqlEventLogStorageTable.insert().returning(
                SqlEventLogStorageTable.c.id, sort_by_parameter_order=True
            ),
            rows,
        )
        ids = [int(r[0]) for r in result.fetchall()]
        if len(ids) != len(rows):
            raise dg.DagsterInvariantViolationError("batched event insert returned no ids")
        return ids

    # -- reads --------------------------------------------------------------------------------
    def event_run_and_time(self, storage_ids: Sequence[int]) -> dict[int, tuple[str, float]]:
        """Run id and time of event rows by storage id, read from their columns without
        deserializing the events (a range's check suites look up one per session)."""
        table = SqlEventLogStorageTable
        found: dict[int, tuple[str, float]] = {}
        ids = list(storage_ids)
        with self.index_connection() as conn:  # type: ignore[attr-defined]
            for start in range(0, len(ids), 5000):
                query = db.select(table.c.id, table.c.run_id, table.c.timestamp).where(
                    table.c.id.in_(ids[start : start + 5000])
                )
                for storage_id, run_id, stamp in conn.execute(query):
                    found[int(storage_id)] = (run_id, stamp.replace(tzinfo=dt.UTC).timestamp())
        return found

    # -- assets -------------------------------------------------------------------------------
    def _store_asset_events(
        self, conn, pairs: list[tuple[EventLogEntry, int]], stamps: dict[int, Any]
    ) -> None:
        tag_rows = self._asset_event_tag_rows(pairs, stamps)
        if tag_rows and self.has_table(AssetEventTagsTable.name):  # type: ignore[attr-defined]
            _insert(conn, AssetEventTagsTable, tag_rows)
        latest: dict[tuple[dg.AssetKey, str], tuple[EventLogEntry, int]] = {}
        for event, event_id in pairs:
            data = event.dagster_event.event_specific_data  # type: ignore[union-attr]
            latest[(_asset_key(data), event.dagster_event.event_type_value)] = (event, event_id)  # type: ignore[union-attr]
        for event, event_id in latest.values():
            self._store_asset_event(conn, event, event_id)  # type: ignore[attr-defined]

    def _asset_event_tag_rows(
        self, pairs: list[tuple[EventLogEntry, int]], stamps: dict[int, Any] | None = None
    ) -> list[dict]:
        """The rows Dagster's `_store_asset_event_tags` inserts for these events (the indexed
        tags of materializations and observations: their data version), built with the asset
        key's text and the indexed tag names looked up once per asset and tag set instead of
        per event (a range's events share both), and each event's insert timestamp from its
        event row (`stamps`, by storage id) when given."""
        keys: dict[dg.AssetKey, str] = {}
        indexed: dict[frozenset[str], set[str]] = {}
        rows = []
        for event, event_id in pairs:
            data = event.dagster_event.event_specific_data  # type: ignore[union-attr]
            if isinstance(data, StepMaterializationData):
                asset_event = data.materialization
            elif isinstance(data, AssetObservationData):
                asset_event = data.asset_observation
            else:
                continue
            tags = asset_event.tags or {}
            if not tags:
                continue
            names = frozenset(tags)
            if names not in indexed:
                indexed[names] = self.get_asset_tags_to_index(set(names))  # type: ignore[attr-defined]
            if not indexed[names]:
                continue
            asset_key = asset_event.asset_key
            if asset_key not in keys:
                keys[asset_key] = asset_key.to_string()
            stamp = (
                stamps[event_id] if stamps is not None else self._event_insert_timestamp(event)  # type: ignore[attr-defined]
            )
            rows += [
                {
                    "event_id": event_id,
                    "asset_key": keys[asset_key],
                    "key": key,
                    "value": value,
                    "event_timestamp": stamp,
                }
                for key, value in tags.items()
                if key in indexed[names]
            ]
        return rows

    # -- checks -------------------------------------------------------------------------------
    def _store_planned_checks(self, conn, pairs: list[tuple[EventLogEntry, int]]) -> None:
        table = AssetCheckExecutionsTable
        # The sessions of a range, by the (asset key, check name) whose planned rows hold them:
        # a run plans every check of its range with the same sessions, so the first check's rows
        # are written from Python and the others copied from them in SQL (INSERT ... SELECT),
        # instead of 5,800 parameter rows per check for a 23-year range (~40 us each).
        written: dict[tuple[str, ...], tuple[str, str]] = {}
        for event, event_id in pairs:
            planned: AssetCheckEvaluationPlanned = event.dagster_event.event_specific_data  # type: ignore[union-attr,assignment]
            row = {
                "asset_key": planned.asset_key.to_string(),
                "check_name": planned.check_name,
                "run_id": event.run_id,
                "execution_status": AssetCheckExecutionRecordStatus.PLANNED.value,
                "evaluation_event_timestamp": self._event_insert_timestamp(event),  # type: ignore[attr-defined]
                "evaluation_event_storage_id": event_id,
            }
            if planned.partitions_subset is None:
                conn.execute(
                    table.insert(),
                    [{**row, "partition": None, "evaluation_event": serialize_value(event)}],
                )
                continue
            # One row per partition and no event in it: Dagster's record allows a planned row
            # without one, and the planned event is in the log once
            # (`evaluation_event_storage_id`), instead of 2,500 copies of it per check. The
            # subset may hold a plain definition (a run created from a remote asset graph): its
            # keys come from precomputed windows (`session_windows.py`).
            keys = tuple(subset_partition_keys(planned.partitions_subset))
            source = written.get(keys)
            if source is None:
                conn.execute(
                    table.insert(),
                    [{**row, "partition": key, "evaluation_event": None} for key in keys],
                )
                written[keys] = (row["asset_key"], row["check_name"])
                continue
            copy = db.select(
                *(db.literal(row[c], table.c[c].type) for c in _PLANNED_COPY_VALUES),
                table.c.partition,
            ).where(
                table.c.asset_key == source[0],
                table.c.check_name == source[1],
                table.c.run_id == event.run_id,
                table.c.partition.is_not(None),
            )
            conn.execute(table.insert().from_select([*_PLANNED_COPY_VALUES, "partition"], copy))

    def _store_check_evaluations(
        self, conn, pairs: list[tuple[EventLogEntry, int]], serialized: dict[int, str]
    ) -> None:
        table = AssetCheckExecutionsTable
        run_id = pairs[0][0].run_id
        by_check: dict[tuple[str, str], list[tuple[EventLogEntry, int]]] = {}
        for event, event_id in pairs:
            evaluation: AssetCheckEvaluation = event.dagster_event.event_specific_data  # type: ignore[union-attr,assignment]
            by_check.setdefault(
                (evaluation.asset_key.to_string(), evaluation.check_name), []
            ).append((event, event_id))
        for (asset_key, check_name), items in by_check.items():
            # Which of the verdicts' partitions the run planned (a range's rows are thousands;
            # its verdicts name a few sessions, if any: the failing ones).
            partitions = {
                e.dagster_event.event_specific_data.partition  # type: ignore[union-attr]
                for e, _ in items
            }
            query = db.select(table.c.partition).where(
                table.c.asset_key == asset_key,
                table.c.check_name == check_name,
                table.c.run_id == run_id,
            )
            if len(partitions) <= _FEW_PARTITIONS:
                keyed = sorted(p for p in partitions if p is not None)
                query = query.where(
                    db.or_(table.c.partition.is_(None), table.c.partition.in_(keyed))
                )
            planned = {r[0] for r in conn.execute(query).fetchall()}
            updates, inserts, unplanned_verdict, covering = [], [], None, None
            for event, event_id in items:
                evaluation = event.dagster_event.event_specific_data  # type: ignore[union-attr]
                values = {
                    "execution_status": (
                        AssetCheckExecutionRecordStatus.SUCCEEDED.value
                        if evaluation.passed
                        else AssetCheckExecutionRecordStatus.FAILED.value
                    ),
                    "evaluation_event": serialized[event_id],
                    "evaluation_event_timestamp": self._event_insert_timestamp(event),  # type: ignore[attr-defined]
                    "evaluation_event_storage_id": event_id,
                    "materialization_event_storage_id": (
                        evaluation.target_materialization_data.storage_id
                        if evaluation.target_materialization_data
                        else None
                    ),
                }
                if evaluation.partition is None and COVERS_PLANNED_SESSIONS in evaluation.metadata:
                    covering = {**values, "evaluation_event": slim(serialize_value(_slim(event)))}
                elif evaluation.partition in planned:
                    updates.append({"b_partition": evaluation.partition, **values})
                else:
                    if evaluation.partition is None:
                        unplanned_verdict = values
                    inserts.append(
                        {
                            "asset_key": asset_key,
                            "check_name": check_name,
                            "run_id": run_id,
                            "partition": evaluation.partition,
                            **values,
                        }
                    )
            if updates:
                keyed = [u for u in updates if u["b_partition"] is not None]
                unkeyed = [u for u in updates if u["b_partition"] is None]
                base = table.update().where(
                    table.c.asset_key == asset_key,
                    table.c.check_name == check_name,
                    table.c.run_id == run_id,
                )
                columns = {c: db.bindparam(f"v_{c}") for c in _VALUE_COLUMNS}
                for group, condition in (
                    (keyed, table.c.partition == db.bindparam("b_partition")),
                    (unkeyed, table.c.partition.is_(None)),
                ):
                    if group:
                        conn.execute(
                            base.where(condition).values(**columns),
                            [_bind(u) for u in group],
                        )
            if inserts:
                conn.execute(table.insert(), inserts)
            if covering is not None:  # after the sessions with their own verdicts
                _rewrite_planned_sessions(conn, (asset_key, check_name, run_id), covering)
            if unplanned_verdict is not None:
                # A verdict without partition whose planned rows are all still open: an
                # unpartitioned check (Dagster 1.13 plans it once per partition of a range run
                # but evaluates it once). Its row without partition, inserted above, is its
                # execution, as in a one-session run; the per-session rows would stay PLANNED
                # forever, so they go. A partitioned check has resolved its sessions before its
                # range verdict (`checks/per_session.py`); rows it left open get that verdict.
                check_rows = (asset_key, check_name, run_id)
                if _all_planned(conn, check_rows):
                    _drop_planned(conn, check_rows)
                else:
                    _resolve_planned(conn, check_rows, unplanned_verdict)


def _insert(conn, table: db.Table, rows: list[dict[str, Any]]) -> None:
    """INSERT many rows: through sqlite3's `executemany` on SQLite (`sqlite_rows.py`: the same
    rows without SQLAlchemy's per-row Python), SQLAlchemy's executemany elsewhere."""
    if sqlite_rows.applies(conn, table):
        sqlite_rows.insert(conn, table, rows)
    else:
        conn.execute(table.insert(), rows)


def _asset_key(data: Any) -> dg.AssetKey:
    """The asset key of an asset event's data (materialization, observation, planned)."""
    if isinstance(data, StepMaterializationData):
        return data.materialization.asset_key
    if isinstance(data, AssetObservationData):
        return data.asset_observation.asset_key
    return data.asset_key


def _check_rows(check: tuple[str, str, str]) -> list[Any]:
    table = AssetCheckExecutionsTable
    asset_key, check_name, run_id = check
    return [
        table.c.asset_key == asset_key,
        table.c.check_name == check_name,
        table.c.run_id == run_id,
    ]


def _all_planned(conn, check: tuple[str, str, str]) -> bool:
    """Whether every row of the check with a partition is still PLANNED in the run."""
    table = AssetCheckExecutionsTable
    resolved = conn.execute(
        db.select(db.func.count())
        .select_from(table)
        .where(
            *_check_rows(check),
            table.c.partition.is_not(None),
            table.c.execution_status != AssetCheckExecutionRecordStatus.PLANNED.value,
        )
    ).scalar_one()
    return resolved == 0


def _drop_planned(conn, check: tuple[str, str, str]) -> None:
    table = AssetCheckExecutionsTable
    conn.execute(
        table.delete().where(
            *_check_rows(check),
            table.c.partition.is_not(None),
            table.c.execution_status == AssetCheckExecutionRecordStatus.PLANNED.value,
        )
    )


def _resolve_planned(conn, check: tuple[str, str, str], values: dict[str, Any]) -> None:
    """Set `values` on the rows of (asset key, check name, run id) still PLANNED."""
    table = AssetCheckExecutionsTable
    conditions = [
        *_check_rows(check),
        table.c.execution_status == AssetCheckExecutionRecordStatus.PLANNED.value,
    ]
    conn.execute(table.update().where(*conditions).values(**values))


def _rewrite_planned_sessions(conn, check: tuple[str, str, str], values: dict[str, Any]) -> None:
    """Give the check's sessions still PLANNED in the run the covering verdict `values`, each
    with its session's latest materialization, keeping their partition and creation time.

    The rows are replaced by new ones rather than updated in place: a planned row (~150 bytes)
    growing to a verdict's ~1 KB splits pages that stay partly empty (8% of the table after a
    10-year backfill on SQLite); rows appended in one go fill them. All in SQL, three statements
    whatever the number of sessions (a 23-year range has 5,800 per check, ~80 checks): the
    planned rows are set aside under a marker run id (the table's unique index on asset key,
    check, run and partition forbids their new rows while they exist), copied with the verdict
    by one `INSERT ... SELECT`, then deleted. Fetching them and inserting 5,800 parameter rows
    per check through SQLAlchemy cost ~0.2 s a check in Python (bind processing per row)."""
    table = AssetCheckExecutionsTable
    ev = SqlEventLogStorageTable
    asset_key, check_name, run_id = check
    # Same length as a run id (a UUID): the marked rows keep their size while set aside.
    marker = ("~" + uuid.uuid4().hex * 2)[: max(len(run_id), 33)]
    conn.execute(
        table.update()
        .where(
            *_check_rows(check),
            table.c.execution_status == AssetCheckExecutionRecordStatus.PLANNED.value,
            table.c.partition.is_not(None),
        )
        .values(run_id=marker)
    )
    marked = [
        table.c.asset_key == asset_key,
        table.c.check_name == check_name,
        table.c.run_id == marker,
    ]
    latest_materialization = (
        db.select(db.func.max(ev.c.id))
        .where(
            ev.c.asset_key == table.c.asset_key,
            ev.c.partition == table.c.partition,
            ev.c.dagster_event_type == T.ASSET_MATERIALIZATION.value,
        )
        .scalar_subquery()
    )
    verdict = [c for c in _VALUE_COLUMNS if c != "materialization_event_storage_id"]
    copy = (
        db.select(
            table.c.asset_key,
            table.c.check_name,
            db.literal(run_id, table.c.run_id.type),
            table.c.partition,
            table.c.create_timestamp,
            *(db.literal(values[c], table.c[c].type) for c in verdict),
            latest_materialization,
        )
        .where(*marked)
        .order_by(table.c.id)
    )
    columns = [
        "asset_key",
        "check_name",
        "run_id",
        "partition",
        "create_timestamp",
        *verdict,
        "materialization_event_storage_id",
    ]
    conn.execute(table.insert().from_select(columns, copy))
    conn.execute(table.delete().where(*marked))


_PLANNED_COPY_VALUES = (
    "asset_key",
    "check_name",
    "run_id",
    "execution_status",
    "evaluation_event_timestamp",
    "evaluation_event_storage_id",
)
_VALUE_COLUMNS = (
    "execution_status",
    "evaluation_event",
    "evaluation_event_timestamp",
    "evaluation_event_storage_id",
    "materialization_event_storage_id",
)


def _bind(update: dict[str, Any]) -> dict[str, Any]:
    out = {f"v_{c}": update[c] for c in _VALUE_COLUMNS}
    if update["b_partition"] is not None:
        out["b_partition"] = update["b_partition"]
    return out


def _slim(event: EventLogEntry) -> EventLogEntry:
    """The event without what only the run's log shows (message, logging tags, handles, pid):
    the copy each session resolved by a covering verdict keeps."""
    dagster_event = event.get_dagster_event()
    slim = dagster_event._replace(
        step_handle=None, node_handle=None, logging_tags={}, message=None, pid=None
    )
    return event._replace(user_message="", dagster_event=slim)


def _range_materializations_to_compact(events: Sequence[EventLogEntry]) -> set[int]:
    """Positions of the batch's partition materializations of each asset but its last two: they
    are stored without the step's metadata and the log-only fields (see the module docstring)."""
    positions: dict[dg.AssetKey, list[int]] = {}
    for i, event in enumerate(events):
        data = event.dagster_event.event_specific_data if event.dagster_event else None
        if isinstance(data, StepMaterializationData) and data.materialization.partition:
            positions.setdefault(data.materialization.asset_key, []).append(i)
    return {i for indexes in positions.values() for i in indexes[:-2]}


def _compacted(event: EventLogEntry) -> EventLogEntry:
    """A range materialization without the step's metadata and the log-only fields."""
    dagster_event = event.get_dagster_event()
    data = dagster_event.event_specific_data
    bare = data.materialization.with_metadata({})  # type: ignore[union-attr]
    return event._replace(
        user_message="",  # the run's log shows the event's own message, which stays
        dagster_event=dagster_event._replace(
            event_specific_data=data._replace(materialization=bare),  # type: ignore[union-attr]
            step_handle=None,
            node_handle=None,
            logging_tags={},
            pid=None,
        ),
    )


# -- storages ----------------------------------------------------------------------------------
class BatchedSqliteEventLogStorage(ExclusivePoolSlots, BatchedEventWrites, SqliteEventLogStorage):
    """Dagster's SQLite event log (run shards + index shard) with batched writes and pool slots
    that one step at a time can hold (`pool_slots.py`).

    Config: `base_dir` (optional). Without it the event log lives where Dagster's own default
    puts it, `<instance root>/history/runs`, so switching between this class and Dagster's keeps
    the history. The instance root is the folder the instance was opened from
    (`DagsterInstance.from_config(path)` or `$DAGSTER_HOME`), known only once the instance
    registers itself: opening the storage waits for that, never guesses from the environment
    (an instance opened from one folder while `DAGSTER_HOME` names another would otherwise
    record its events in the other folder).
    """

    mirrors_to_index_shard = True

    def __init__(self, base_dir: str | None = None, inst_data: ConfigurableClassData | None = None):
        self._pending_inst_data = inst_data
        if base_dir is not None:
            super().__init__(base_dir, inst_data)

    def register_instance(self, instance) -> None:
        if not hasattr(self, "_base_dir"):  # opened without base_dir: the instance's own
            super().__init__(
                str(Path(instance.root_directory) / "history" / "runs"), self._pending_inst_data
            )
        super().register_instance(instance)

    def _initdb(self, engine, for_index_shard=False) -> None:
        # Called once per database file (index or run shard) before its first connection.
        db.event.listen(engine, "connect", _larger_pages)
        super()._initdb(engine, for_index_shard)

    @classmethod
    def config_type(cls):
        return {"base_dir": dg.Field(dg.StringSource, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value):  # type: ignore[override]
        return cls(base_dir=config_value.get("base_dir"), inst_data=inst_data)


class BatchedInMemoryEventLogStorage(
    ExclusivePoolSlots, BatchedEventWrites, InMemoryEventLogStorage
):
    """Dagster's in-memory event log (ephemeral instances) with batched writes."""

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(inst_data)


@functools.cache
def _postgres_storage_class() -> type:
    """`BatchedPostgresEventLogStorage`, defined on first use: dagster-postgres (with psycopg2
    and its SQLAlchemy dialect) then loads only in processes whose instance is on PostgreSQL,
    not in every process that imports this module (the checks do, for its batching protocol)."""
    from dagster_postgres import PostgresEventLogStorage
    from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

    class BatchedPostgresEventLogStorage(
        ExclusivePoolSlots, BatchedEventWrites, PostgresEventLogStorage
    ):
        """dagster-postgres' event log, with check events batched too (it batches
        materializations and observations itself). Same config as `PostgresEventLogStorage`."""

        @classmethod
        def from_config_value(cls, inst_data, config_value):
            return cls(
                inst_data=inst_data,
                postgres_url=pg_url_from_config(config_value),
                should_autocreate_tables=config_value.get("should_autocreate_tables", True),
                token_provider=get_token_provider_from_config(config_value),
            )

    BatchedPostgresEventLogStorage.__qualname__ = BatchedPostgresEventLogStorage.__name__
    return BatchedPostgresEventLogStorage


def __getattr__(name: str) -> Any:
    """PEP 562: `BatchedPostgresEventLogStorage` stays importable from this module by name (as
    `dagster.yaml` names it, `module: marketflow_assets.instance.batched_events`)."""
    if name == "BatchedPostgresEventLogStorage":
        return _postgres_storage_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


SQLITE_PAGE_SIZE = 16384
"""Page size of the event log's new SQLite files (SQLite's default is 4,096). A session's
stored event (~1 KB) or check execution row fits two or three times in a 4 KB page with up to a third of
it left empty (measured after a 10-year backfill: 29 MiB of 119 in `asset_check_executions`);
16 KB pages hold a dozen and leave a few percent. New files also get `auto_vacuum = FULL`, so
the pages a run frees (the per-session rows planned for an unpartitioned check, dropped when its
single verdict comes) are given back at commit instead of staying in the file (7 MiB after a
10-year backfill). Only a new file takes either (existing ones keep theirs until a `VACUUM`
outside WAL mode)."""


def _larger_pages(dbapi_connection, _record) -> None:
    # Both take effect only when the file is created (no-ops on an existing file).
    dbapi_connection.execute(f"PRAGMA page_size = {SQLITE_PAGE_SIZE}")
    dbapi_connection.execute("PRAGMA auto_vacuum = FULL")


RUN_LOGS = {"python_log_level": "INFO"}
"""The instances' `python_logs` setting (as in `dagster.yaml` and `dagster.postgres.yaml`): a
run's console log (its captured stderr) at INFO. Dagster logs each of a range run's per-session
materializations at DEBUG, and its default console logger formatted and wrote every one of them
(~70,000 lines for 23 years of history, most of a run's captured log). The run's event log still
records every event whatever the level (Dagster logs its events regardless of level); only the
console lines of DEBUG events, and `context.log.debug` messages, which MarketFlow does not use,
go. Set `python_logs: python_log_level: DEBUG` in an instance's yaml to see them again."""


def batched_ephemeral_instance() -> dg.DagsterInstance:
    """`DagsterInstance.ephemeral()` with `BatchedInMemoryEventLogStorage` and the deployments'
    `python_logs` setting (`RUN_LOGS`) (benchmarks, tests)."""
    from dagster._core.instance import InstanceType
    from dagster._core.launcher.sync_in_memory_run_launcher import SyncInMemoryRunLauncher
    from dagster._core.run_coordinator import DefaultRunCoordinator
    from dagster._core.storage.noop_compute_log_manager import NoOpComputeLogManager
    from dagster._core.storage.root import TemporaryLocalArtifactStorage
    from dagster._core.storage.runs import InMemoryRunStorage

    return dg.DagsterInstance(
        settings={"python_logs": RUN_LOGS},
        instance_type=InstanceType.EPHEMERAL,
        local_artifact_storage=TemporaryLocalArtifactStorage(),
        run_storage=InMemoryRunStorage(),
        event_storage=BatchedInMemoryEventLogStorage(),
        compute_log_manager=NoOpComputeLogManager(),
        run_coordinator=DefaultRunCoordinator(),
        run_launcher=SyncInMemoryRunLauncher(),
    )
