"""Raw checks: objects that differ from their manifest (blocking bronze), payloads whose columns
drift from the provider format (reported by name, objects kept), tickers without data."""

from __future__ import annotations

import dataclasses
import datetime as dt

import dagster as dg
import pandas as pd
import pytest

from marketflow_assets.sources.base import BarsQuery
from marketflow_assets.sources.simulator import SimulatorSource
from marketflow_assets.storage.raw_io_manager import ticker_status
from marketflow_assets.transforms.payloads import bar_dates, session_dates
from marketflow_tests.checks_support import (
    DAILY,
    RAW,
    SILVER,
    evaluations,
    failed,
    lake,
    metadata,
    run_checks,
)
from marketflow_tests.helpers import FRIDAY_EVENING, materializations, materialize, query

ERROR, WARN = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN
R = "raw/daily_bars"


def test_altered_and_lost_objects_fail_integrity_and_block_bronze(settings):
    materialize(settings, select=["raw/daily_bars"], partition_range=("2024-06-03", "2024-06-05"))
    objects = {
        o.partition: o
        for m in lake(settings).manifests("simulator", "daily_bars")
        for o in m.objects
    }
    altered = settings.lake_root / objects["2024-06-03"].key
    altered.write_bytes(altered.read_bytes() + b"\0")
    (settings.lake_root / objects["2024-06-05"].key).unlink()

    # Raw fetches nothing (the manifests cover the sessions); its blocking check stops bronze.
    result = materialize(
        settings,
        select=["raw/daily_bars", "bronze/daily_bars"],
        partition_range=("2024-06-03", "2024-06-05"),
        raise_on_error=False,
    )
    assert not result.success
    ev = evaluations(result)[(R, "raw_integrity")]
    md = metadata(ev)
    assert not ev.passed and ev.severity == ERROR and ev.blocking
    assert md["failing_rows"] == 2 and md["checked_rows"] == 3
    assert md["failing_sessions"] == {"2024-06-03": 1, "2024-06-05": 1}
    assert "differs from manifest" in md["sample"] or "size" in md["sample"]
    assert "missing" in md["sample"]
    assert set(md["failing_tickers"]) == {"AAPL", "MSFT", "KO", "TSLA", "^GSPC"}
    assert not materializations(result, ["bronze", "daily_bars"])


def _land(settings, frame: pd.DataFrame) -> None:
    """Land a provider payload exactly as the raw IO manager does (objects + manifest)."""
    sim = SimulatorSource(seed=0, clock=FRIDAY_EVENING)
    keys = session_dates(bar_dates(frame["Date"])).dt.strftime("%Y-%m-%d")
    first, last = keys.min(), keys.max()
    payload = sim.fetch_bars(BarsQuery(("AAPL", "MSFT"), dt.date(2024, 6, 3), dt.date(2024, 6, 7)))
    lake(settings).land_frame(
        source="simulator",
        dataset="daily_bars",
        frame=frame,
        partitions=keys,
        request={**payload.request, "landed": {"first": first, "last": last}},
        tickers=ticker_status(dataclasses.replace(payload, frame=frame)),
        fetched_at=FRIDAY_EVENING,
        run_id=None,
    )


@pytest.fixture
def payload() -> pd.DataFrame:
    sim = SimulatorSource(seed=0, clock=FRIDAY_EVENING)
    return sim.fetch_bars(
        BarsQuery(("AAPL", "MSFT"), dt.date(2024, 6, 3), dt.date(2024, 6, 7))
    ).frame


def _session(frame: pd.DataFrame, day: str) -> pd.DataFrame:
    dates = session_dates(bar_dates(frame["Date"])).dt.strftime("%Y-%m-%d")
    return frame[dates == day].reset_index(drop=True)


def test_new_column_warns_by_name_and_bronze_still_loads(settings, payload):
    _land(settings, _session(payload, "2024-06-03").assign(**{"Capital Gains": 0.0}))
    ev = evaluations(run_checks(settings, RAW, partition="2024-06-03"))[(R, "payload_schema")]
    md = metadata(ev)
    assert not ev.passed and ev.severity == WARN
    assert md["new_columns"] == ["Capital Gains"] and md["missing_columns"] == []
    assert md["failing_rows"] == 1 and md["failing_sessions"] == {"2024-06-03": 1}
    assert set(md["failing_tickers"]) == {"AAPL", "MSFT"} and "Capital Gains" in ev.description
    bronze = materialize(settings, select=["bronze/daily_bars"], partition="2024-06-03")
    assert bronze.success
    assert query(settings, "SELECT count(*) AS n FROM bronze.daily_bars")["n"][0] == 2


def test_missing_and_retyped_columns_are_errors_and_bronze_names_the_missing_one(settings, payload):
    _land(settings, _session(payload, "2024-06-04").drop(columns=["Close"]))
    _land(settings, _session(payload, "2024-06-05").astype({"Volume": str}))
    result = run_checks(settings, RAW, partition_range=("2024-06-04", "2024-06-05"))
    ev = evaluations(result)[(R, "payload_schema")]
    md = metadata(ev)
    assert not ev.passed and ev.severity == ERROR
    assert md["missing_columns"] == ["Close"] and md["retyped_columns"] == ["Volume"]
    assert md["failing_sessions"] == {"2024-06-04": 1, "2024-06-05": 1}
    assert "missing Close" in ev.description and "retyped Volume" in ev.description
    assert "string" in md["sample"]  # the type the provider switched to

    broken = materialize(
        settings, select=["bronze/daily_bars"], partition="2024-06-04", raise_on_error=False
    )
    failure = next(e for e in broken.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data.error)
    assert "missing column(s) Close" in message and "kept as landed" in message
    # The raw objects are kept, intact.
    assert evaluations(result)[(R, "raw_integrity")].passed


def test_tickers_without_data_are_named_and_counted_as_missing_history(settings):
    mixed = dataclasses.replace(settings, tickers="AAPL,ZZZZ", simulator_faults="unknown=ZZZZ")
    result = materialize(mixed, select=DAILY, partition="2024-06-03")
    assert result.success
    evals = evaluations(result)
    ev = evals[(R, "provider_errors")]
    md = metadata(ev)
    assert not ev.passed and ev.severity == WARN and not ev.blocking
    assert md["failing_tickers"] == ["ZZZZ"] and "delisted" in md["tickers_without_data"]["ZZZZ"]
    assert "ZZZZ" in ev.description
    completeness = evals[("silver/daily_bars", "completeness")]
    assert completeness.passed  # AAPL is complete; ZZZZ never had a bar:
    assert metadata(completeness)["tickers_without_any_bar"] == ["ZZZZ"]
    assert failed(result) == {(R, "provider_errors"), ("silver/daily_bars", "freshness")}


def test_the_raw_checks_run_with_only_raw_selected(settings):
    result = materialize(settings, select=["raw/daily_bars"], partition="2024-06-03")
    assert {name for (asset, name) in evaluations(result) if asset == R} == {
        "raw_integrity",
        "payload_schema",
        "provider_errors",
    }
    assert failed(result) == set()
    assert (SILVER.to_user_string(), "freshness") not in evaluations(result)
