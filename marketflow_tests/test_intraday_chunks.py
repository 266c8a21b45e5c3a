"""Range runs of the one-minute path go in bounded chunks (raw one request at a time, bronze one
session at a time, silver and gold a few sessions per query, checks a few sessions or tickers at
a time) and still replace the whole range at once: the same rows as session-by-session runs, and
a failure in a later chunk leaves the previous rows of the range untouched. Small universe, two
sessions per query (one in production) so that the range spans several chunks of each kind."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from marketflow_assets.checks import table_checks
from marketflow_assets.storage import warehouse
from marketflow_assets.transforms.payloads import PayloadSchemaError
from marketflow_tests.checks_support import (
    clone,
    evaluations,
    execute,
    metadata,
    run_checks,
    sessions_of,
)
from marketflow_tests.helpers import make_settings, materialize, output_metadata, query

# Seven sessions over ten calendar days: two provider requests (<= 7 days each), seven bronze
# batches, and with two sessions per query four silver/gold chunks, one across a weekend.
RANGE = ("2024-05-30", "2024-06-07")
SESSIONS = [
    "2024-05-30",
    "2024-05-31",
    "2024-06-03",
    "2024-06-04",
    "2024-06-05",
    "2024-06-06",
    "2024-06-07",
]
CHUNK = 2
ASSETS = [
    "raw/intraday_bars_1m",
    "bronze/intraday_bars_1m",
    "silver/intraday_bars_1m",
    "gold/intraday_vwap",
    "gold/intraday_anomalies",
]
TABLES = {
    # Fetch ids and object keys name each home's own fetches; everything else must agree.
    "bronze.intraday_bars_1m": "SELECT * EXCLUDE (fetch_id, raw_object) FROM bronze.intraday_bars_1m",
    "silver.intraday_bars_1m": "SELECT * FROM silver.intraday_bars_1m",
    "gold.intraday_vwap": "SELECT * FROM gold.intraday_vwap",
    "gold.intraday_anomalies": "SELECT * FROM gold.intraday_anomalies",
}


def rows(settings, name: str) -> pd.DataFrame:
    return query(settings, f"{TABLES[name]} ORDER BY ALL")


def staging_left(settings) -> list[str]:
    """Scratch files of batched writes left next to the warehouse."""
    return sorted(p.name for p in settings.warehouse.parent.glob("*.pending*"))


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr("marketflow_assets.assets.silver.INTRADAY_CHUNK_SESSIONS", CHUNK)
    monkeypatch.setattr("marketflow_assets.assets.gold_intraday.INTRADAY_CHUNK_SESSIONS", CHUNK)


@pytest.fixture(scope="module")
def ranged(tmp_path_factory):
    """One range run, chunked (module scope: later tests only add failed attempts)."""
    settings = make_settings(tmp_path_factory.mktemp("ranged") / "home", tickers="AAPL,KO")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("marketflow_assets.assets.silver.INTRADAY_CHUNK_SESSIONS", CHUNK)
        patch.setattr("marketflow_assets.assets.gold_intraday.INTRADAY_CHUNK_SESSIONS", CHUNK)
        chunked = []
        real = warehouse.session_chunks
        patch.setattr(
            warehouse,
            "session_chunks",
            lambda bounds, size: chunked.append(real(bounds, size)) or chunked[-1],
        )
        result = materialize(settings, select=ASSETS, partition_range=RANGE)
    return settings, result, chunked


def test_a_chunked_range_run_writes_the_rows_of_session_by_session_runs(ranged, tmp_path):
    settings, result, chunked = ranged
    # It did go in chunks: two requests, seven bronze batches, 4 query chunks per SQL table.
    assert output_metadata(result, ["raw", "intraday_bars_1m"])["provider_requests"] == 2
    bronze = output_metadata(result, ["bronze", "intraday_bars_1m"])
    assert bronze["raw_rows_read"] == bronze["dagster/row_count"] == 2 * 7 * 390
    assert bronze["fetches_used"] == 2 and bronze["superseded_rows"] == 0
    assert [len(c) for c in chunked] == [4, 4, 4]  # silver, vwap, anomalies
    assert chunked[0][1] == (pd.Timestamp("2024-06-01").date(), pd.Timestamp("2024-06-04").date())

    one_by_one = make_settings(tmp_path / "home", tickers="AAPL,KO")
    for session in SESSIONS:
        materialize(one_by_one, select=ASSETS, partition=session)
    for name in TABLES:
        expected = rows(one_by_one, name)
        assert len(expected) > 0 or name == "gold.intraday_anomalies"
        # Bronze and silver to the bit. Gold's running sums may add in another order (DuckDB's
        # window sums are not bit-stable across partition layouts): the last bits may differ.
        exact = not name.startswith("gold.")
        pd.testing.assert_frame_equal(
            rows(settings, name), expected, check_exact=exact, rtol=0 if exact else 1e-12
        )
    assert staging_left(settings) == []


def test_a_bad_session_late_in_the_range_leaves_bronze_as_it_was(ranged, monkeypatch):
    settings, _, _ = ranged
    before = query(settings, "SELECT * FROM bronze.intraday_bars_1m ORDER BY ALL")
    from marketflow_assets.assets import bronze

    real, typed = bronze.type_bars, []

    def fault_in_third_session(frame, interval):
        typed.append(staging_left(settings))
        if len(typed) == 3:
            raise PayloadSchemaError("injected: Close is missing in this session's payload")
        return real(frame, interval).assign(volume=lambda d: d["volume"] + 1)  # would change

    monkeypatch.setattr(bronze, "type_bars", fault_in_third_session)
    result = materialize(
        settings, select=["bronze/intraday_bars_1m"], partition_range=RANGE, raise_on_error=False
    )
    assert not result.success and len(typed) == 3  # two sessions were staged before the fault
    assert "warehouse.duckdb.pending" in typed[-1]  # in a scratch file next to the warehouse
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "injected" in str(failure.event_specific_data.error)
    after = query(settings, "SELECT * FROM bronze.intraday_bars_1m ORDER BY ALL")
    pd.testing.assert_frame_equal(after, before, check_exact=True)
    assert staging_left(settings) == []


def test_a_query_failing_on_a_later_chunk_leaves_silver_as_it_was(ranged, monkeypatch):
    settings, _, _ = ranged
    before = query(settings, "SELECT * FROM silver.intraday_bars_1m ORDER BY ALL")
    from marketflow_assets.assets import silver

    real = silver.silver_intraday_bars_sql

    def fails_from_june_5():
        # Chunks 1-2 (up to 06-04) would write changed volumes; chunk 3 raises.
        return f"""
SELECT * REPLACE (
    CASE WHEN session_date < DATE '2024-06-05' THEN volume + 1
         ELSE error('injected failure for ' || ticker)::BIGINT END AS volume)
FROM ({real()})"""

    monkeypatch.setattr(silver, "silver_intraday_bars_sql", fails_from_june_5)
    # The warehouse retry policy tries again (each attempt must leave silver as it was): at once.
    monkeypatch.setattr(dg.RetryPolicy, "calculate_delay", lambda self, attempt: 0)
    result = materialize(
        settings, select=["silver/intraday_bars_1m"], partition_range=RANGE, raise_on_error=False
    )
    assert not result.success
    retried = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(retried) == 3
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "injected failure" in str(failure.event_specific_data.error)
    after = query(settings, "SELECT * FROM silver.intraday_bars_1m ORDER BY ALL")
    pd.testing.assert_frame_equal(after, before, check_exact=True)
    assert staging_left(settings) == []


def test_chunked_contract_and_keys_checks_find_every_bad_row(ranged, tmp_path, monkeypatch):
    settings, _, _ = ranged
    broken = clone(settings, tmp_path / "home")
    first_minute = (
        "(SELECT min(ts) FROM silver.intraday_bars_1m WHERE ticker = 'KO' AND session_date = '{}')"
    )
    execute(
        broken,
        *(
            "UPDATE silver.intraday_bars_1m SET high = low / 2 "
            f"WHERE ticker = 'KO' AND ts = {first_minute.format(session)}"
            for session in ("2024-05-30", "2024-06-06")
        ),
        "INSERT INTO silver.intraday_bars_1m SELECT * FROM silver.intraday_bars_1m "
        f"WHERE ticker = 'KO' AND ts = {first_minute.format('2024-06-04')}",
    )
    chunks = []
    real = table_checks.scoped_chunks
    monkeypatch.setattr(table_checks, "CHUNK_ROWS", 2000)  # 2 sessions of 2 tickers: 1,560 rows
    monkeypatch.setattr(
        table_checks, "scoped_chunks", lambda *a: chunks.append(real(*a)) or chunks[-1]
    )
    result = run_checks(broken, dg.AssetKey(["silver", "intraday_bars_1m"]), partition_range=RANGE)
    found = evaluations(result)
    # contract: four ranges of sessions; keys: one range per ticker.
    assert [len(c) for c in chunks] == [4, 2]
    contract = found[("silver/intraday_bars_1m", "contract")]
    assert not contract.passed and metadata(contract)["failing_rows"] == 2
    assert sessions_of(contract) == {"2024-05-30", "2024-06-06"}
    keys = found[("silver/intraday_bars_1m", "keys")]
    assert not keys.passed and metadata(keys)["failing_rows"] == 2  # both copies
    assert sessions_of(keys) == {"2024-06-04"}
