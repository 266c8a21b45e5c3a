"""A dividend the close run brings re-adjusts the ticker's whole history, once, from silver."""

from __future__ import annotations

import dataclasses
import json

import pytest

from marketflow_assets.automation.common import (
    AUTOMATION_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
    SILVER_DAILY,
)
from marketflow_assets.automation.corporate_actions import stale_tickers
from marketflow_assets.resources import TICKERS_TAG
from marketflow_tests.automation_support import (
    add_run,
    at,
    et,
    execute_request,
    target_keys,
    tick_sensor,
    without_dbt,
)
from marketflow_tests.checks_support import DAILY_AND_GOLD as DAILY
from marketflow_tests.helpers import deployment_event_log_instance, materialize, query

SENSOR = "corporate_action_rebuilds"


@pytest.fixture(scope="module")
def instance():
    with deployment_event_log_instance() as instance:
        yield instance


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """AAPL and KO built through Friday 14 June 2024 (KO's 31 May dividend known)."""
    from marketflow_tests.helpers import make_settings

    settings = make_settings(tmp_path_factory.mktemp("home"), tickers="AAPL,KO")
    friday = at(settings, et(2024, 6, 14, 18, 0))
    materialize(friday, select=DAILY, partition_range=("2024-05-20", "2024-06-14"))
    return friday


def stale(settings) -> dict:
    import duckdb

    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        return stale_tickers(con, ["AAPL", "KO"])
    finally:
        con.close()


def test_actions_known_when_history_was_built_need_nothing(history, instance):
    data = tick_sensor(history, SENSOR, instance)
    assert not data.run_requests
    assert "KO dividend" in data.skip_message and "already reflect" in data.skip_message
    assert json.loads(data.cursor)["seen_at"]
    again = tick_sensor(history, SENSOR, instance, data.cursor)
    assert not again.run_requests and "no split or dividend" in again.skip_message


def test_a_new_dividend_rebuilds_that_tickers_history_once(history, instance):
    baseline = tick_sensor(history, SENSOR, instance).cursor
    # Tuesday 18 June: the close runs bring AAPL's dividend (ex-date 18 June).
    tuesday = at(history, et(2024, 6, 18, 18, 0))
    materialize(tuesday, select=DAILY, partition_range=("2024-06-17", "2024-06-18"))
    assert set(stale(tuesday)) == {"AAPL"}  # its rows before the 18th are on the old basis

    # While a run that builds silver is in progress, the sensor waits (cursor unchanged).
    busy = add_run(instance, {AUTOMATION_TAG: "close"}, asset_selection=[SILVER_DAILY])
    waiting = tick_sensor(tuesday, SENSOR, instance, baseline)
    assert not waiting.run_requests and busy in waiting.skip_message
    instance.delete_run(busy)

    data = tick_sensor(tuesday, SENSOR, instance, baseline)
    (request,) = data.run_requests
    assert request.tags[TICKERS_TAG] == "AAPL"
    assert request.tags[RANGE_START_TAG] == "2024-05-20"  # AAPL's first session in silver
    assert request.tags[RANGE_END_TAG] == "2024-06-18"  # latest closed session
    assert request.tags[AUTOMATION_TAG] == "corporate_actions"
    assert "AAPL dividend" in request.tags["marketflow/change"]
    keys = {k.to_user_string() for k in target_keys(tuesday, SENSOR)}
    assert {"silver/daily_bars", "silver/intraday_bars_1m", "gold/daily_features"} <= keys
    assert {"gold/ma_crossovers", "gold/ticker_reports"} <= keys  # daily marts and reports
    assert not keys & {"raw/daily_bars", "bronze/daily_bars", "gold/intraday_vwap"}

    # Idempotent: the next tick finds nothing new.
    again = tick_sensor(tuesday, SENSOR, instance, data.cursor)
    assert not again.run_requests and "no split or dividend" in again.skip_message

    # Executing the rebuild (without dbt, for speed) puts AAPL's history on the new basis,
    # without touching KO's rows.
    ko_before = query(tuesday, "SELECT * FROM silver.daily_bars WHERE ticker = 'KO' ORDER BY 2")
    result = execute_request(
        tuesday, SENSOR, request, without_dbt(tuesday, target_keys(tuesday, SENSOR)), instance
    )
    assert result.success
    assert stale(tuesday) == {}
    ko_after = query(tuesday, "SELECT * FROM silver.daily_bars WHERE ticker = 'KO' ORDER BY 2")
    assert ko_after.equals(ko_before)
    factor = query(
        tuesday,
        "SELECT adj_close / close AS f FROM silver.daily_bars "
        "WHERE ticker = 'AAPL' AND session_date = DATE '2024-06-17'",
    )["f"].iloc[0]
    assert factor < 1  # back-adjusted for the dividend

    # A sensor starting without a cursor now finds nothing to rebuild.
    fresh = tick_sensor(tuesday, SENSOR, instance)
    assert not fresh.run_requests and "already reflect" in fresh.skip_message


def test_no_warehouse_yet(settings, instance):
    data = tick_sensor(dataclasses.replace(settings), SENSOR, instance)
    assert not data.run_requests and "no warehouse" in data.skip_message
