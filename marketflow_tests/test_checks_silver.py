"""Checks on silver.daily_bars (and the layers around it): a clean history passes every check;
each rule, broken on purpose in a copy of that history, fails its check with the failing rows,
tickers and sessions; a blocking failure stops gold in a real run; evaluations are recorded."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re

import dagster as dg
import pytest

from marketflow_tests.checks_support import (
    BLOCKING_SILVER_CHECKS,
    DAILY_AND_GOLD,
    SILVER,
    clone,
    evaluations,
    execute,
    failed,
    metadata,
    run_checks,
    sessions_of,
    tickers_of,
)
from marketflow_tests.helpers import make_settings, materializations, materialize, query

RANGE = ("2024-04-25", "2024-06-06")  # 30 sessions: enough history for the volume window
ERROR, WARN = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN
S = "silver/daily_bars"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("checks") / "home")
    result = materialize(settings, select=DAILY_AND_GOLD, partition_range=RANGE)
    return settings, result


@pytest.fixture
def copy(base, tmp_path):
    return clone(base[0], tmp_path / "home")


def test_clean_history_passes_every_check_once_per_range_and_records_it(base):
    settings, result = base
    evals = evaluations(result)
    expected = {
        ("raw/daily_bars", "raw_integrity"),
        ("raw/daily_bars", "payload_schema"),
        ("raw/daily_bars", "provider_errors"),
        ("bronze/daily_bars", "contract"),
        ("bronze/daily_bars", "keys"),
        ("silver/corporate_actions", "contract"),
        ("silver/rejected_bars", "contract"),
        *((S, name) for name in BLOCKING_SILVER_CHECKS),
        (S, "completeness"),
        (S, "price_jump"),
        (S, "volume_spike"),
        (S, "freshness"),
        (S, "column_schema_change"),
        ("gold/daily_features", "contract"),
        ("gold/daily_features", "keys"),
    }
    assert expected <= set(evals)
    assert failed(result) == set()
    # A single-run range: one evaluation per check, for the whole range, not per partition.
    assert len(result.get_asset_check_evaluations()) == len(evals)
    contract = evals[(S, "contract")]
    assert contract.partition is None
    assert metadata(contract)["scope"] == "2024-04-25..2024-06-06 (30 sessions)"
    assert metadata(contract)["checked_rows"] == 150
    assert {k for k, e in evals.items() if e.blocking} >= {(S, n) for n in BLOCKING_SILVER_CHECKS}
    assert not evals[(S, "completeness")].blocking and not evals[(S, "price_jump")].blocking

    recorded = query(settings, "SELECT * FROM ops.check_results")
    ours = {k for k in evals if k[1] != "column_schema_change"}  # Dagster's own check
    assert set(zip(recorded["asset_key"], recorded["check_name"], strict=True)) == ours
    assert len(recorded) == len(ours) and recorded["passed"].all()
    assert (recorded["run_id"] == result.run_id).all()
    row = recorded.set_index(["asset_key", "check_name"]).loc[(S, "row_reconciliation")]
    assert (str(row["partition_start"].date()), str(row["partition_end"].date())) == RANGE
    assert json.loads(row["metadata"])["raw_rows"] == 150


def test_contract_rule_fails_contract_with_the_row(copy):
    execute(
        copy,
        "UPDATE silver.daily_bars SET dividend = -0.5 "
        "WHERE ticker = 'KO' AND session_date = '2024-06-03'",
    )
    result = run_checks(copy, SILVER, partition="2024-06-03")
    assert failed(result) == {(S, "contract")}
    ev = evaluations(result)[(S, "contract")]
    md = metadata(ev)
    assert ev.severity == ERROR and ev.blocking and ev.partition == "2024-06-03"
    assert md["failing_rows"] == 1 and md["checked_rows"] == 5
    assert md["failing_tickers"] == ["KO"] and md["failing_sessions"] == {"2024-06-03": 1}
    assert "dividend non-negative (-0.5)" in md["sample"]


def test_duplicate_key_fails_keys_and_reconciliation(copy):
    execute(
        copy,
        "INSERT INTO silver.daily_bars SELECT * FROM silver.daily_bars "
        "WHERE ticker = 'MSFT' AND session_date = '2024-05-20'",
    )
    result = run_checks(copy, SILVER, partition="2024-05-20")
    assert failed(result) == {(S, "keys"), (S, "row_reconciliation")}
    keys = evaluations(result)[(S, "keys")]
    md = metadata(keys)
    assert md["failing_rows"] == 2 and md["failing_sessions"] == {"2024-05-20": 2}
    assert tickers_of(keys) == {"MSFT"} and "2 rows share this key" in md["sample"]
    reconciliation = metadata(evaluations(result)[(S, "row_reconciliation")])
    assert "bronze 1 <> silver 2 + rejected 0" in reconciliation["sample"]


def test_inconsistent_ohlc_fails_ohlc_consistency(copy):
    execute(
        copy,
        "UPDATE silver.daily_bars SET high = low * 0.9, adj_high = adj_low * 0.9 "
        "WHERE ticker = 'TSLA' AND session_date = '2024-05-15'",
    )
    result = run_checks(copy, SILVER, partition="2024-05-15")
    # The contract's frame rule says the same thing; the dedicated check says what exactly.
    assert failed(result) == {(S, "ohlc_consistency"), (S, "contract")}
    md = metadata(evaluations(result)[(S, "ohlc_consistency")])
    assert md["failing_rows"] == 1 and md["failing_tickers"] == ["TSLA"]
    assert (
        "traded low > high" in md["sample"] and "adjusted open outside [low, high]" in md["sample"]
    )


def test_lost_bronze_row_fails_reconciliation_only(copy):
    execute(
        copy,
        "DELETE FROM bronze.daily_bars WHERE ticker = 'AAPL' AND session_date = '2024-05-28'",
    )
    result = run_checks(copy, SILVER, partition="2024-05-28")
    assert failed(result) == {(S, "row_reconciliation")}
    md = metadata(evaluations(result)[(S, "row_reconciliation")])
    assert md["failing_rows"] == 1 and md["failing_tickers"] == ["AAPL"]
    assert md["failing_sessions"] == {"2024-05-28": 1}
    assert (
        "raw 1 <> bronze 0" in md["sample"] and "bronze 0 <> silver 1 + rejected 0" in md["sample"]
    )
    assert (md["raw_rows"], md["bronze_rows"], md["silver_rows"]) == (5, 4, 5)


def test_range_run_lists_each_failing_session_and_single_run_is_attributed(copy):
    execute(
        copy,
        "UPDATE silver.daily_bars SET split_ratio = 0 "
        "WHERE (ticker = 'KO' AND session_date = '2024-05-20') "
        "OR (ticker = 'AAPL' AND session_date = '2024-06-04')",
    )
    ranged = evaluations(run_checks(copy, SILVER, partition_range=("2024-05-16", "2024-06-06")))
    contract = ranged[(S, "contract")]
    assert not contract.passed and contract.partition is None
    md = metadata(contract)
    assert md["scope"] == "2024-05-16..2024-06-06 (15 sessions)"
    assert md["failing_sessions"] == {"2024-05-20": 1, "2024-06-04": 1}
    assert md["failing_tickers"] == ["AAPL", "KO"] and md["failing_session_count"] == 2

    single = evaluations(run_checks(copy, SILVER, partition="2024-06-04"))[(S, "contract")]
    assert single.partition == "2024-06-04" and sessions_of(single) == {"2024-06-04"}
    assert tickers_of(single) == {"AAPL"}

    rows = query(
        copy,
        "SELECT partition_start, partition_end, failing_rows, metadata FROM ops.check_results "
        "WHERE check_name = 'contract' AND asset_key = 'silver/daily_bars' AND NOT passed "
        "ORDER BY evaluated_at",
    )
    assert [(str(a.date()), str(b.date()), n) for a, b, n in rows.iloc[:, :3].values] == [
        ("2024-05-16", "2024-06-06", 2),
        ("2024-06-04", "2024-06-04", 1),
    ]
    assert json.loads(rows["metadata"][0])["failing_sessions"] == {"2024-05-20": 1, "2024-06-04": 1}


def test_hundredfold_close_warns_price_jump_and_lands_in_ops_anomalies(copy):
    prices = ", ".join(
        f"{c} = {c} * 100"
        for c in ("open", "high", "low", "close", "adj_open", "adj_high", "adj_low", "adj_close")
    )
    execute(
        copy,
        f"UPDATE silver.daily_bars SET {prices} WHERE ticker = 'KO' AND session_date = '2024-05-22'",
    )
    for _ in range(2):  # evaluating again replaces the scope's anomalies, never duplicates them
        result = run_checks(copy, SILVER, partition_range=("2024-05-21", "2024-05-23"))
        assert result.success  # WARN does not fail the run
        assert failed(result) == {(S, "price_jump")}
        ev = evaluations(result)[(S, "price_jump")]
        md = metadata(ev)
        assert ev.severity == WARN and not ev.blocking
        assert md["failing_rows"] == 2 and md["failing_tickers"] == ["KO"]
        assert md["failing_sessions"] == {"2024-05-22": 1, "2024-05-23": 1}
        anomalies = query(copy, "SELECT * FROM ops.anomalies ORDER BY session_date")
        assert list(anomalies["ticker"]) == ["KO", "KO"]
        assert [str(d.date()) for d in anomalies["session_date"]] == ["2024-05-22", "2024-05-23"]
        assert set(anomalies["check_name"]) == {"price_jump"}
        assert anomalies["value"].abs().gt(4.5).all() and "no split" in anomalies["detail"][0]
    runs = query(
        copy, "SELECT count(*) AS n FROM ops.check_results WHERE check_name = 'price_jump'"
    )
    assert runs["n"][0] == 3  # the base run plus the two evaluations: history is appended


def test_volume_spike_warns(copy):
    execute(
        copy,
        "UPDATE silver.daily_bars SET volume = volume * 1000, adj_volume = adj_volume * 1000 "
        "WHERE ticker = 'MSFT' AND session_date = '2024-06-05'",
    )
    result = run_checks(copy, SILVER, partition="2024-06-05")
    assert failed(result) == {(S, "volume_spike")}
    ev = evaluations(result)[(S, "volume_spike")]
    md = metadata(ev)
    assert ev.severity == WARN and md["failing_rows"] == 1 and md["failing_tickers"] == ["MSFT"]
    assert md["failing_sessions"] == {"2024-06-05": 1}
    row = query(copy, "SELECT * FROM ops.anomalies WHERE check_name = 'volume_spike'")
    assert list(row["ticker"]) == ["MSFT"] and row["value"][0] > md["threshold_robust_z"]


def test_freshness_follows_the_provider_clock_and_the_configured_delay(base):
    settings = base[0]
    fresh = evaluations(run_checks(settings, SILVER))[(S, "freshness")]
    assert fresh.passed and metadata(fresh)["due_session"] == "2024-06-06"  # 22:00 < close + 3h

    # One hour after the close is enough for this deployment: 2024-06-07 is due and missing.
    strict = dataclasses.replace(settings, freshness_delay_minutes=60)
    ev = evaluations(run_checks(strict, SILVER))[(S, "freshness")]
    md = metadata(ev)
    assert not ev.passed and ev.severity == WARN
    assert md["due_session"] == "2024-06-07" and md["failing_rows"] == 5
    assert md["latest_loaded_session"] == "2024-06-06"

    # The provider's clock a week later: every ticker is four sessions behind.
    later = dataclasses.replace(
        settings, simulator_now=dt.datetime(2024, 6, 13, 12, 0, tzinfo=dt.UTC)
    )
    md = metadata(evaluations(run_checks(later, SILVER))[(S, "freshness")])
    assert md["due_session"] == "2024-06-12"
    assert re.search(r"\| 2024-06-06 +\| 2024-06-12 +\| +4 \|", md["sample"])
    assert md["failing_tickers"] == ["AAPL", "KO", "MSFT", "TSLA", "^GSPC"]


CSV_SAME_SESSION_TWICE = """Date,Open,High,Low,Close,Adj Close,Volume
2024-06-03,10.00,10.50,9.90,10.20,10.20,1000
2024-06-04,10.20,10.40,10.00,10.30,10.30,1100
2024-06-04 10:00,10.25,10.45,10.05,10.35,10.35,1200
2024-06-05,10.30,10.90,10.30,10.80,10.80,900
"""


def test_a_daily_csv_with_two_bars_on_one_session_is_refused_naming_the_line(settings, tmp_path):
    """Two bars at different times on one date is an intraday export, not a daily file: the csv
    source refuses the ticker's file naming file, line and field, so silver never gets two rows
    for one key and nothing downstream is built from it. (Blocking checks stopping downstream
    steps are covered in test_checks_raw and test_range_check_reports.)"""
    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "DUP.csv").write_text(CSV_SAME_SESSION_TWICE)
    csv = dataclasses.replace(
        settings, source="csv", csv_dir=folder, tickers="DUP", simulator_now=None
    )
    broken = materialize(csv, select=DAILY_AND_GOLD, partition="2024-06-04", raise_on_error=False)
    assert not broken.success
    failures = [e for e in broken.all_events if e.event_type_value == "STEP_FAILURE"]
    assert [e.step_key for e in failures] == ["raw__daily_bars"]
    error = str(failures[0].event_specific_data.error)
    assert "DUP.csv, line 3, field Date" in error and "intraday" in error, error[:600]
    assert not materializations(broken, ["gold", "daily_features"])


def test_table_drifting_from_its_contract_fails_contract(copy):
    execute(copy, "ALTER TABLE silver.daily_bars ALTER COLUMN volume TYPE DOUBLE")
    result = run_checks(copy, SILVER, partition="2024-06-03")
    ev = evaluations(result)[(S, "contract")]
    md = metadata(ev)
    assert not ev.passed and md["failing_rows"] == 1
    assert md["schema_problems"] == ["column volume is DOUBLE (contract: BIGINT)"]
    assert "column volume is DOUBLE" in md["sample"]


def test_the_generic_checks_fail_on_every_layer(copy):
    execute(
        copy,
        "UPDATE gold.daily_features SET rsi_14 = 150 "
        "WHERE ticker = 'TSLA' AND session_date = '2024-06-05'",
        "ALTER TABLE bronze.daily_bars ALTER COLUMN ticker DROP NOT NULL",
        "UPDATE bronze.daily_bars SET ticker = NULL "
        "WHERE ticker = '^GSPC' AND session_date = '2024-06-05'",
        "INSERT INTO silver.rejected_bars SELECT ticker, session_date, interval, ts, bar_date, "
        "'bogus', NULL, open, high, low, close, adj_close, volume, source, fetch_id, fetched_at, "
        "raw_object FROM bronze.daily_bars WHERE ticker = 'KO' AND session_date = '2024-06-05'",
        "UPDATE silver.corporate_actions SET dividend_factor = 1.5",
    )
    keys = [dg.AssetKey(k.split("/")) for k in ("gold/daily_features", "bronze/daily_bars")]
    keys += [dg.AssetKey(["silver", "rejected_bars"]), dg.AssetKey(["silver", "corporate_actions"])]
    evals = evaluations(run_checks(copy, *keys, partition="2024-06-05"))
    gold = metadata(evals[("gold/daily_features", "contract")])
    assert gold["failing_tickers"] == ["TSLA"] and "rsi_14 in [0, 100] (150.0)" in gold["sample"]
    bronze = evals[("bronze/daily_bars", "keys")]
    assert not bronze.passed and not bronze.blocking
    assert metadata(bronze)["failing_rows"] == 1 and "NULL in key" in metadata(bronze)["sample"]
    assert metadata(evals[("bronze/daily_bars", "contract")])["schema_problems"] == [
        "column ticker allows NULL (contract: NOT NULL)"
    ]
    rejected = metadata(evals[("silver/rejected_bars", "contract")])
    assert rejected["failing_tickers"] == ["KO"] and "reason isin" in rejected["sample"]
    actions = evals[("silver/corporate_actions", "contract")]
    assert not actions.passed and actions.blocking and metadata(actions)["scope"] == "whole table"
    assert "dividend_factor in_range" in metadata(actions)["sample"]


def test_raw_landed_by_another_run_after_bronze_does_not_break_reconciliation(tmp_path):
    """Runs overlap in production (a new ticker's backfill, a file drop): rows another run lands
    after this run's bronze step are that run's to reconcile, with its own bronze step."""
    settings = make_settings(tmp_path / "home")
    instance = dg.DagsterInstance.ephemeral()
    span = ("2024-06-03", "2024-06-07")
    daily = DAILY_AND_GOLD[:5]
    materialize(settings, select=daily, partition_range=span, instance=instance)
    grown = dataclasses.replace(settings, tickers=settings.tickers + ",NVDA")
    materialize(
        grown, select=["raw/daily_bars"], partition_range=span, tickers=["NVDA"], instance=instance
    )

    checks_only = run_checks(settings, SILVER, partition_range=span, instance=instance)
    assert evaluations(checks_only)[(S, "row_reconciliation")].passed

    scoped = materialize(
        grown, select=daily[1:], partition_range=span, tickers=["NVDA"], instance=instance
    )
    reconciled = evaluations(scoped)[(S, "row_reconciliation")]
    assert reconciled.passed and metadata(reconciled)["bronze_rows"] == 5  # NVDA's 5 sessions
