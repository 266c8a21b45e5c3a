"""Range verdicts reported per session, so the UI's partition view of a check tells the truth.

A single-run range backfill evaluates each check once over the whole range (one SQL pass, see
`framework.py`). Dagster plans a partitioned check of such a run once per session ("planned"
rows) but attributes an `AssetCheckResult` of a range run to no partition, so the sessions stay
planned (shown as skipped) and the verdict sits in a row no session shows. Instead of that one
result, the suite first records one `AssetCheckEvaluation` per check *and session*, which
resolves that session's planned row with the verdict that covers it:

- a session with failing rows fails, with its own failing rows (count and sample);
- a session without fails passes;
- a verdict that cannot be attributed to sessions (the data could not be loaded, the check
  raised, a whole-range finding) fails or passes every session of the range, with its summary.

Each evaluation targets the session's latest materialization (what the UI compares with to
call a verdict current) and carries `range` in its metadata. They are written to the run's event
log as one batch through the instance (`report_dagster_event` with batch metadata, as Dagster
writes planned events), not yielded one by one: Dagster's per-event path costs milliseconds an
event, and a 10-year range has ~2,500 sessions per check. The range verdict itself follows as
the usual `AssetCheckResult` (the check's output, which gates downstream steps of blocking
checks, its failing sessions listed, and the one evaluation the step reports and alerts read).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import dagster as dg

# Not re-exported at the top level: the record the UI uses to tell whether a partition's verdict
# is current (its materialization storage id), and the batch marker Dagster itself uses for
# planned events and range materializations (dagster-io/dagster#19829, PR #19862).
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster._core.events import DagsterEventBatchMetadata, generate_event_batch_id

from marketflow_assets.checks.samples import sample_markdown
from marketflow_assets.instance.batched_events import COVERS_PLANNED_SESSIONS, BatchedEventWrites

if TYPE_CHECKING:  # types only: the framework calls this module (a range run's verdicts)
    from marketflow_assets.checks.framework import Evaluated, Scope, Suite


def latest_materializations(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partitions: Sequence[str]
) -> dict[str, AssetCheckEvaluationTargetMaterializationData]:
    """The latest materialization of each partition (storage id, run, time), in two queries
    (on MarketFlow's storages without deserializing the events)."""
    ids = instance.get_latest_storage_id_by_partition(
        asset_key, dg.DagsterEventType.ASSET_MATERIALIZATION, set(partitions)
    )
    if not ids:
        return {}
    storage = instance.event_log_storage
    if isinstance(storage, BatchedEventWrites):
        found = storage.event_run_and_time(list(ids.values()))
    else:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key, storage_ids=list(ids.values())),
            limit=len(ids),
        ).records
        found = {r.storage_id: (r.run_id, r.timestamp) for r in records}
    return {
        partition: AssetCheckEvaluationTargetMaterializationData(
            storage_id=storage_id, run_id=found[storage_id][0], timestamp=found[storage_id][1]
        )
        for partition, storage_id in ids.items()
        if storage_id in found
    }


def _session_metadata(item: Evaluated, scope_label: str, session: str) -> dict[str, Any]:
    outcome = item.outcome
    metadata: dict[str, Any] = {"scope": session, "range": scope_label}
    if outcome.passed:
        metadata["failing_rows"] = 0
        return metadata
    if outcome.sessions:
        rows = outcome.sessions.get(session, 0)
        metadata["failing_rows"] = rows
        if rows:
            metadata["sample"] = dg.MetadataValue.md(
                sample_markdown(outcome.session_samples.get(session))
            )
    else:  # a finding about the whole range
        metadata["failing_rows"] = outcome.failing_rows
        metadata["sample"] = dg.MetadataValue.md(sample_markdown(outcome.sample))
    metadata["range_failing_rows"] = outcome.failing_rows
    metadata["range_failing_sessions"] = len(outcome.sessions)
    return metadata


def _session_verdict(item: Evaluated, session: str) -> tuple[bool, str]:
    outcome = item.outcome
    if outcome.passed:
        return True, outcome.summary
    if not outcome.sessions:
        return False, outcome.summary
    rows = outcome.sessions.get(session, 0)
    if rows == 0:
        return True, f"no failing rows on {session} (range: {outcome.summary})"
    return False, f"{rows} failing row(s) on {session} (range: {outcome.summary})"


def report_session_evaluations(
    context: dg.AssetCheckExecutionContext,
    suite: Suite,
    scope: Scope,
    items: Sequence[Evaluated],
) -> int:
    """Record the verdict of each check for each session of the scope in the run's event log, as
    one event batch (written in one transaction by MarketFlow's storages when
    DAGSTER_EVENT_BATCH_SIZE > 0, one event at a time otherwise). Returns how many sessions.

    On MarketFlow's storages a session without failing rows needs no event of its own: one
    evaluation marked `COVERS_PLANNED_SESSIONS` resolves every session of the check the run still
    has planned (each row keeps its own session and latest materialization; see
    `instance/batched_events.py`). Only sessions that failed, or every session on a storage
    without that support, get an evaluation each."""
    sessions = [s.isoformat() for s in scope.sessions]
    if not sessions or not items:
        return 0
    instance = context.instance
    bulk = isinstance(instance.event_log_storage, BatchedEventWrites)
    label = scope.label
    # (check, session with its own evaluation, or None: the covering one for the n others)
    planned: list[tuple[Evaluated, str | None, int]] = []
    for item in items:
        own = [s for s in sessions if not _session_verdict(item, s)[0]] if bulk else sessions
        planned += [(item, s, 1) for s in own]
        if bulk and len(own) < len(sessions):
            planned.append((item, None, len(sessions) - len(own)))
    targets = latest_materializations(
        instance, suite.asset_key, sorted({s for _, s, _ in planned if s})
    )
    run_id = context.run.run_id
    job_name = context.run.job_name
    step_key = context.op_execution_context.get_step_execution_context().step.key
    batch_id = generate_event_batch_id()
    for n, (item, session, others) in enumerate(planned, start=1):
        if session is None:
            passed = True
            description = f"no failing rows on the {others} other session(s) of {label}"
            metadata = {COVERS_PLANNED_SESSIONS: others, "range": label, "failing_rows": 0}
        else:
            passed, description = _session_verdict(item, session)
            metadata = _session_metadata(item, label, session)
        evaluation = dg.AssetCheckEvaluation(
            asset_key=suite.asset_key,
            check_name=item.check.name,
            passed=passed,
            metadata=metadata,
            target_materialization_data=targets.get(session) if session else None,
            severity=item.severity,
            description=description,
            blocking=item.check.blocking,
            partition=session,
        )
        where = f"session {session}" if session else "the range's other sessions"
        event = dg.DagsterEvent(
            event_type_value=dg.DagsterEventType.ASSET_CHECK_EVALUATION.value,
            job_name=job_name,
            step_key=step_key,
            event_specific_data=evaluation,
            message=(
                f"{item.check.name} on {suite.asset_key.to_user_string()} "
                f"{'passed' if passed else 'failed'} for {where}"
            ),
            pid=os.getpid(),
        )
        instance.report_dagster_event(
            event,
            run_id,
            logging.DEBUG,
            batch_metadata=DagsterEventBatchMetadata(batch_id, n == len(planned)),
        )
    return len(sessions) * len(items)
