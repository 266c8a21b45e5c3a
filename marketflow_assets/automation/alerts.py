"""Alerts: failed runs and failed blocking / ERROR checks -> ops.alert_history, Slack, email.

- `run_failure_alerts` (a Dagster run-failure sensor) raises one alert per failed run of this
  code location: what was running (schedule/sensor, sessions, tickers), the failure and each
  failed step's error.
- `check_failure_alerts` reads the asset-check evaluations of every run that finished after its
  cursor (update time of the last finished run seen) and raises one alert per failed evaluation
  that is blocking or of severity ERROR (WARN-only, non-blocking failures stay in the UI and
  ops.check_results). It covers the Python checks and dbt tests alike, works on any event-log
  storage (sqlite is run-sharded), and never reads the warehouse to find them.

Each alert is delivered to the configured channels (`resources/alerting.py`: Slack webhook, email), then
appended to ops.alert_history with where it went. The row goes through a small outbox
(`$MARKETFLOW_HOME/alerts/outbox/`, one JSON file per alert) because DuckDB admits one writing
process: when a run holds the file for longer than a few retries, the row waits there and a later
tick of either sensor writes it. Rows are keyed by a stable alert id, so a re-evaluated tick never duplicates a row.
Secret values (webhook URL, SMTP login) are masked in every title, detail and log line.

Both RUNNING by default: they only read the instance's event log until something fails.
"""

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import dagster as dg
import pandas as pd

from marketflow_assets.automation.common import (
    AUTOMATION_TAG,
    PARTITION_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
    WarehouseBusy,
    digest,
    warehouse_connection,
)
from marketflow_assets.contracts.ops import ALERT_HISTORY
from marketflow_assets.faults import fault_point
from marketflow_assets.resources import TICKERS_TAG
from marketflow_assets.resources.alerting import AlertingResource
from marketflow_assets.storage.atomic import write_atomic
from marketflow_assets.storage.warehouse import WarehouseResource, ensure_table

CHECK_ALERTS_INTERVAL_SECONDS = 60
MAX_DETAIL_CHARS = 4000
MAX_RUNS_PER_TICK = 200


@dataclass
class Alert:
    kind: str  # run_failure | check_failure
    severity: str  # ERROR | WARN
    title: str
    detail: str
    run_id: str | None = None
    asset_key: str | None = None
    check_name: str | None = None
    scope: str | None = None
    created_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    @property
    def alert_id(self) -> str:
        return digest(self.kind, self.run_id, self.asset_key, self.check_name, self.scope)


def raise_alerts(
    alerts: list[Alert],
    alerting: AlertingResource,
    warehouse: WarehouseResource,
    log,
) -> list[dict]:
    """Deliver each alert, queue its row in the outbox, then write the outbox to the warehouse."""
    outbox = Path(alerting.outbox_dir)
    outbox.mkdir(parents=True, exist_ok=True)
    rows = []
    for alert in alerts:
        title = alerting.redact(alert.title)
        detail = alerting.redact(alert.detail)[:MAX_DETAIL_CHARS]
        body = detail + (f"\n\nrun: {alert.run_id}" if alert.run_id else "")
        delivered, errors = alerting.send(alert.severity, title, body)
        fault_point("alerts.delivered")
        row = {
            **asdict(alert),
            "title": title,
            "detail": detail,
            "alert_id": alert.alert_id,
            "created_at": alert.created_at.isoformat(),
            "delivered_to": ",".join(delivered) or None,
            "delivery_errors": "; ".join(errors) or None,
        }
        write_atomic(outbox / f"{alert.alert_id}.json", json.dumps(row, default=str).encode())
        rows.append(row)
        channels = ", ".join(delivered) or "no channel"
        log.info(f"alert {alert.alert_id} [{alert.severity}] {title} -> {channels}")
        for error in errors:
            log.warning(f"alert {alert.alert_id} not delivered: {error}")
    flush_outbox(alerting, warehouse, log)
    return rows


def flush_outbox(alerting: AlertingResource, warehouse: WarehouseResource, log) -> int:
    """Append queued alert rows to ops.alert_history (once per alert id); returns rows written.
    The connection lives for milliseconds; a run step meeting it waits (DuckDBResource retries
    its connection on a lock)."""
    outbox = Path(alerting.outbox_dir)
    files, rows = [], []
    for path in sorted(outbox.glob("*.json")) if outbox.is_dir() else []:
        row = _outbox_row(path, log)
        if row is not None:
            files.append(path)
            rows.append(row)
    if not files:
        return 0
    contract = ALERT_HISTORY
    frame = pd.DataFrame(rows, columns=contract.column_names)
    casts = ", ".join(f"CAST({c.name} AS {c.sql_type}) AS {c.name}" for c in contract.columns)
    try:
        with warehouse_connection(warehouse.database, read_only=False) as con:
            ensure_table(con, contract)
            con.register("_alerts", frame)
            con.execute(
                f"INSERT INTO {contract.table} ({', '.join(contract.column_names)}) "
                f"SELECT {casts} FROM _alerts a WHERE NOT EXISTS "
                f"(SELECT 1 FROM {contract.table} h WHERE h.alert_id = a.alert_id)"
            )
            con.unregister("_alerts")
    except WarehouseBusy as exc:
        log.warning(f"{len(files)} alert row(s) wait in {outbox} for the warehouse: {exc}")
        return 0
    for f in files:
        f.unlink(missing_ok=True)
    return len(files)


def _outbox_row(path: Path, log) -> dict | None:
    """One queued alert row, or None after moving an unreadable file (truncated by a crash,
    written by hand) to `outbox/../quarantine/` with a warning naming it: one bad file never
    stops the other rows or the sensor."""
    try:
        row = json.loads(path.read_bytes())
        if not isinstance(row, dict) or not row.get("alert_id"):
            raise ValueError("not an alert row (no alert_id)")
        return row
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        quarantine = path.parent.parent / "quarantine"
        quarantine.mkdir(parents=True, exist_ok=True)
        target = quarantine / path.name
        path.replace(target)
        log.warning(f"unreadable alert row {path} ({exc}) moved to {target}")
        return None


# -- failed runs ---------------------------------------------------------------------------------
def _first_lines(text: str, lines: int = 6) -> str:
    return "\n".join(text.strip().splitlines()[:lines])


def run_scope(run: dg.DagsterRun) -> str | None:
    tags = run.tags
    parts = []
    if RANGE_START_TAG in tags:
        parts.append(f"{tags[RANGE_START_TAG]}..{tags.get(RANGE_END_TAG)}")
    elif PARTITION_TAG in tags:
        parts.append(tags[PARTITION_TAG])
    if tags.get(TICKERS_TAG):
        parts.append(f"tickers {tags[TICKERS_TAG]}")
    return ", ".join(parts) or None


def run_failure_alert(context: dg.RunFailureSensorContext) -> Alert:
    run = context.dagster_run
    steps = context.get_step_failure_events()
    failed = []
    for event in steps:
        error = getattr(event.event_specific_data, "error", None)
        message = _first_lines(error.message) if error else "(no error message)"
        failed.append((event.step_key or "?", message))
    launched_by = (
        run.tags.get(AUTOMATION_TAG)
        or run.tags.get("dagster/sensor_name")
        or (run.tags.get("dagster/schedule_name") or "a person (UI/CLI)")
    )
    scope = run_scope(run)
    what = ", ".join(k for k, _ in failed) or run.job_name
    lines = [
        f"Run {run.run_id} ({run.job_name}) failed.",
        f"Launched by: {launched_by}" + (f"; scope: {scope}" if scope else ""),
        f"Failure: {_first_lines(context.failure_event.message or '')}",
    ]
    if failed:
        lines.append("Failed steps:")
        lines += [f"- {key}: {message}" for key, message in failed]
    return Alert(
        kind="run_failure",
        severity="ERROR",
        title=f"Run failed: {what}" + (f" [{scope}]" if scope else ""),
        detail="\n".join(lines),
        run_id=run.run_id,
        asset_key=", ".join(k.replace("__", "/") for k, _ in failed)[:500] or None,
        scope=scope,
    )


@dg.run_failure_sensor(
    name="run_failure_alerts",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "On every failed run of this code location: write an ops.alert_history row (run, failed "
        "steps and errors, scope) and post it to Slack (MARKETFLOW_SLACK_WEBHOOK_URL) and/or email "
        "(MARKETFLOW_ALERT_EMAIL_TO + MARKETFLOW_SMTP_*), when configured. Dagster keeps its "
        "cursor (last run event seen). RUNNING by default."
    ),
)
def run_failure_alerts(
    context: dg.RunFailureSensorContext,
    alerting: AlertingResource,
    warehouse: WarehouseResource,
):
    raise_alerts([run_failure_alert(context)], alerting, warehouse, context.log)


# -- failed checks -------------------------------------------------------------------------------
def _blocking(context: dg.SensorEvaluationContext, evaluation) -> bool:
    if evaluation.blocking is not None:
        return bool(evaluation.blocking)
    try:
        return bool(
            context.repository_def.asset_graph.get_check_spec(evaluation.asset_check_key).blocking
        )
    except Exception:  # a check that no longer exists
        return False


def _metadata_text(evaluation) -> str:
    lines = []
    for key in ("scope", "failing_rows", "checked_rows", "failing_tickers", "failing_sessions"):
        value = evaluation.metadata.get(key)
        if value is not None:
            text = (
                json.dumps(value.value, default=str)
                if not isinstance(value.value, str)
                else value.value
            )
            lines.append(f"{key}: {text[:400]}")
    return "\n".join(lines)


def check_failure_alert(evaluation, run_id: str, blocking: bool) -> Alert:
    asset = evaluation.asset_key.to_user_string()
    severity = evaluation.severity.value
    scope_value = evaluation.metadata.get("scope")
    scope = evaluation.partition or (scope_value.value if scope_value is not None else None)
    kind = f"{severity}{', blocking' if blocking else ''}"
    detail = "\n".join(
        filter(
            None,
            [
                f"Check {evaluation.check_name} on {asset} failed ({kind}).",
                evaluation.description,
                _metadata_text(evaluation),
            ],
        )
    )
    return Alert(
        kind="check_failure",
        severity=severity,
        title=f"Check failed: {asset} {evaluation.check_name} ({kind})"
        + (f" [{scope}]" if scope else ""),
        detail=detail,
        run_id=run_id,
        asset_key=asset,
        check_name=evaluation.check_name,
        scope=str(scope) if scope is not None else None,
    )


FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


def finished_runs_after(instance: dg.DagsterInstance, cursor: dict) -> list:
    """Run records that finished after the cursor (update time, then run ids at that time)."""
    after = dt.datetime.fromisoformat(cursor["updated_after"])
    seen = set(cursor.get("run_ids", ()))
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=FINISHED, updated_after=after - dt.timedelta(seconds=1)),
        order_by="update_timestamp",
        ascending=True,
        limit=MAX_RUNS_PER_TICK,
    )
    return [
        r
        for r in records
        if r.update_timestamp > after
        or (r.update_timestamp == after and r.dagster_run.run_id not in seen)
    ]


def failed_check_alerts(context: dg.SensorEvaluationContext, run_id: str) -> list[Alert]:
    alerts = []
    for entry in context.instance.all_logs(
        run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ):
        evaluation = entry.dagster_event.event_specific_data
        if evaluation.passed or (evaluation.partition and "range" in evaluation.metadata):
            continue  # a session's share of a range verdict: the range verdict alerts once
        blocking = _blocking(context, evaluation)
        if blocking or evaluation.severity == dg.AssetCheckSeverity.ERROR:
            alerts.append(check_failure_alert(evaluation, run_id, blocking))
    return alerts


@dg.sensor(
    name="check_failure_alerts",
    minimum_interval_seconds=CHECK_ALERTS_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Every minute: in each run that finished since the cursor, every asset-check evaluation "
        "(Python checks and dbt tests) that failed and is blocking or of severity ERROR becomes "
        "an ops.alert_history row and a Slack/email message when configured; also writes alert "
        "rows that waited for a busy warehouse. Cursor: the last finished run seen. RUNNING by "
        "default."
    ),
)
def check_failure_alerts(
    context: dg.SensorEvaluationContext,
    alerting: AlertingResource,
    warehouse: WarehouseResource,
):
    written = flush_outbox(alerting, warehouse, context.log)
    if context.cursor is None:
        start = dt.datetime.now(dt.UTC)
        context.update_cursor(json.dumps({"updated_after": start.isoformat(), "run_ids": []}))
        return dg.SkipReason(
            f"watching check evaluations of runs finishing after {start:%Y-%m-%d %H:%M:%S} UTC"
        )
    cursor = json.loads(context.cursor)
    records = finished_runs_after(context.instance, cursor)
    if not records:
        return dg.SkipReason(
            "no run finished since the last tick"
            + (f"; wrote {written} queued alert row(s)" if written else "")
        )
    alerts = [a for r in records for a in failed_check_alerts(context, r.dagster_run.run_id)]
    if alerts:
        raise_alerts(alerts, alerting, warehouse, context.log)
    last = records[-1].update_timestamp
    context.update_cursor(
        json.dumps(
            {
                "updated_after": last.isoformat(),
                "run_ids": [r.dagster_run.run_id for r in records if r.update_timestamp == last],
            }
        )
    )
    return dg.SkipReason(f"{len(records)} finished run(s), {len(alerts)} check alert(s) raised")
