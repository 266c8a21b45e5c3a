"""Ops contracts: data about the data. Written by the asset checks (`marketflow_assets.checks`),
not by assets, so quality has a history that can be charted and queried with SQL."""

from __future__ import annotations

import pandera.pandas as pa

from marketflow_assets.contracts.model import Col, TableContract

SEVERITIES = ("WARN", "ERROR")
NON_NEGATIVE = pa.Check.ge(0, error="non-negative")

CHECK_RESULTS = TableContract(
    table="ops.check_results",
    description=(
        "Every asset-check evaluation, appended (never updated): which check on which asset, over "
        "which sessions, whether it passed, how many rows failed and the full metadata the Dagster "
        "UI shows. A single-partition run has partition_start = partition_end; a range run is one "
        "row for the whole range with its failing sessions in `metadata`."
    ),
    columns=(
        Col(
            "check_name", "VARCHAR", "Check name, as in the Dagster UI (e.g. `row_reconciliation`)."
        ),
        Col("asset_key", "VARCHAR", "Asset the check is attached to, e.g. `silver/daily_bars`."),
        Col(
            "partition_start",
            "DATE",
            "First session evaluated; NULL for checks on unpartitioned assets or whole tables.",
            nullable=True,
        ),
        Col(
            "partition_end",
            "DATE",
            "Last session evaluated (= partition_start for a single-partition run).",
            nullable=True,
        ),
        Col("passed", "BOOLEAN", "Whether the check passed."),
        Col(
            "severity",
            "VARCHAR",
            "Severity of the evaluation: ERROR or WARN.",
            checks=(pa.Check.isin(SEVERITIES),),
        ),
        Col("blocking", "BOOLEAN", "Whether a failure stops downstream assets in the same run."),
        Col(
            "failing_rows",
            "BIGINT",
            "Rows of the check's failure table (bad rows, missing (ticker, session) pairs, bad "
            "objects or columns; the check's description says which); 0 when it passed.",
            checks=(NON_NEGATIVE,),
        ),
        Col(
            "checked_rows",
            "BIGINT",
            "Rows (or pairs, objects, tickers) the check looked at; NULL if not meaningful.",
            nullable=True,
            checks=(NON_NEGATIVE,),
        ),
        Col("description", "VARCHAR", "One-line outcome, as shown in the UI.", nullable=True),
        Col(
            "metadata",
            "VARCHAR",
            "The evaluation's metadata as JSON: tickers, sessions (with failing rows per session), "
            "sample rows, thresholds and counts.",
        ),
        Col("evaluated_at", "TIMESTAMPTZ", "Wall clock of the evaluation (UTC)."),
        Col("run_id", "VARCHAR", "Dagster run that evaluated the check."),
    ),
    key=("run_id", "asset_key", "check_name"),
    key_unique=False,
    partition_column=None,
    ticker_column=None,
)

ANOMALIES = TableContract(
    table="ops.anomalies",
    description=(
        "Rows the anomaly checks flagged (moves or volumes far outside a ticker's norm on a day "
        "without a corporate action), one per check, ticker, session and metric. Each evaluation "
        "replaces its check's rows for the sessions it evaluated, so the table holds the current "
        "verdict, not a history (that is `ops.check_results`)."
    ),
    columns=(
        Col("check_name", "VARCHAR", "Check that flagged the row (`price_jump`, `volume_spike`)."),
        Col("asset_key", "VARCHAR", "Asset evaluated, e.g. `silver/daily_bars`."),
        Col("ticker", "VARCHAR", "Yahoo symbol."),
        Col("session_date", "DATE", "NYSE session of the flagged bar."),
        Col(
            "metric",
            "VARCHAR",
            "What was measured, e.g. `abs_log_return_close`, `volume_robust_z`.",
        ),
        Col("value", "DOUBLE", "The measured value."),
        Col("threshold", "DOUBLE", "The threshold it exceeded."),
        Col("detail", "VARCHAR", "The numbers behind it, readable.", nullable=True),
        Col("evaluated_at", "TIMESTAMPTZ", "Wall clock of the evaluation (UTC)."),
        Col("run_id", "VARCHAR", "Dagster run that evaluated the check."),
    ),
    key=("check_name", "ticker", "session_date", "metric"),
)

ALERT_KINDS = ("run_failure", "check_failure")

ALERT_HISTORY = TableContract(
    table="ops.alert_history",
    description=(
        "Every alert the automation raised (`marketflow_assets/automation/alerts.py`): failed runs "
        "and failed blocking or ERROR checks, one row per alert, appended, with where it was "
        "delivered. Secrets (webhook URLs, SMTP credentials) never appear here."
    ),
    columns=(
        Col(
            "alert_id",
            "VARCHAR",
            "Stable id of the alert (a hash of kind, run, asset, check, scope).",
        ),
        Col(
            "kind",
            "VARCHAR",
            "`run_failure` or `check_failure`.",
            checks=(pa.Check.isin(ALERT_KINDS),),
        ),
        Col("severity", "VARCHAR", "ERROR or WARN.", checks=(pa.Check.isin(SEVERITIES),)),
        Col("title", "VARCHAR", "One line, as sent to Slack and in the email subject."),
        Col(
            "detail",
            "VARCHAR",
            "What failed and why (error messages, failing rows).",
            nullable=True,
        ),
        Col("run_id", "VARCHAR", "Dagster run that failed or evaluated the check.", nullable=True),
        Col("asset_key", "VARCHAR", "Asset(s) concerned, e.g. `silver/daily_bars`.", nullable=True),
        Col("check_name", "VARCHAR", "Failed check (check alerts only).", nullable=True),
        Col(
            "scope",
            "VARCHAR",
            "Sessions and tickers concerned, e.g. `2024-06-03` or `2024-05-01..2024-06-03`.",
            nullable=True,
        ),
        Col("created_at", "TIMESTAMPTZ", "Wall clock when the alert was raised (UTC)."),
        Col(
            "delivered_to",
            "VARCHAR",
            "Channels that accepted the alert (`slack`, `email`, comma-separated); NULL when none "
            "is configured or every delivery failed.",
            nullable=True,
        ),
        Col(
            "delivery_errors",
            "VARCHAR",
            "Why a configured channel did not accept the alert (secrets redacted).",
            nullable=True,
        ),
    ),
    key=("alert_id",),
    partition_column=None,
    ticker_column=None,
)
