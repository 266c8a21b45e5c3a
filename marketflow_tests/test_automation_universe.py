"""Universe changes: an added ticker gets its history (ticker-scoped run), a removed ticker keeps
its history and flips silver/symbols.in_universe."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import dagster as dg
import pytest

from marketflow_assets.automation.common import (
    AUTOMATION_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
)
from marketflow_assets.resources import TICKERS_TAG
from marketflow_tests import checks_support
from marketflow_tests.automation_support import (
    add_run,
    at,
    et,
    execute_request,
    target_keys,
    tick_sensor,
)
from marketflow_tests.helpers import deployment_event_log_instance, materialize, query

SENSOR = "universe_changes"
REFERENCE = ["raw/company_profiles", "bronze/company_profiles", "silver/symbols"]
DAILY = [*checks_support.DAILY, "silver/bar_repairs"]  # one validation: selected whole


@pytest.fixture
def instance():
    with deployment_event_log_instance() as instance:
        yield instance


@pytest.fixture
def universe_file(tmp_path):
    path = tmp_path / "universe.txt"
    path.write_text("# watched by the universe sensor\nAAPL\nKO\n")
    return path


@pytest.fixture
def watched(settings, universe_file):
    return at(dataclasses.replace(settings, tickers=f"@{universe_file}"), et(2024, 6, 7, 18, 0))


def test_first_tick_records_the_universe_without_runs(watched, instance, universe_file):
    data = tick_sensor(watched, SENSOR, instance)
    assert not data.run_requests
    assert f"file {universe_file}" in data.skip_message
    assert json.loads(data.cursor) == {"tickers": ["AAPL", "KO"]}
    unchanged = tick_sensor(watched, SENSOR, instance, data.cursor)
    assert not unchanged.run_requests and "unchanged" in unchanged.skip_message


def test_added_ticker_gets_its_full_history_in_one_scoped_run(watched, instance, universe_file):
    # "Full history" starts at the deployment's first partition, which comes from its Settings.
    watched = dataclasses.replace(watched, start_date=dt.date(2015, 1, 2))
    baseline = tick_sensor(watched, SENSOR, instance).cursor
    universe_file.write_text("AAPL\nKO\nMSFT\n")
    data = tick_sensor(watched, SENSOR, instance, baseline)
    (request,) = data.run_requests
    assert request.tags[TICKERS_TAG] == "MSFT"  # raw fetches only the new ticker
    assert request.tags[RANGE_START_TAG] == "2015-01-02"
    assert request.tags[RANGE_END_TAG] == "2024-06-07"  # latest closed session
    assert request.tags[AUTOMATION_TAG] == "universe"
    assert request.asset_selection is None  # the sensor's target: daily + reference path
    keys = {k.to_user_string() for k in target_keys(watched, SENSOR)}
    assert {"raw/daily_bars", "gold/daily_features", *REFERENCE} <= keys
    # Idempotent: the cursor now holds the new universe.
    assert json.loads(data.cursor)["tickers"] == ["AAPL", "KO", "MSFT"]
    again = tick_sensor(watched, SENSOR, instance, data.cursor)
    assert not again.run_requests
    # The same change evaluated twice (a tick retried after a crash) has the same run key.
    twice = tick_sensor(watched, SENSOR, instance, baseline)
    assert [r.run_key for r in twice.run_requests] == [request.run_key]


def test_removed_ticker_keeps_history_and_flips_in_universe(watched, instance, universe_file):
    # AAPL and KO built (a week of daily bars and the reference data).
    materialize(
        watched,
        select=[*DAILY, *REFERENCE],
        partition_range=("2024-06-03", "2024-06-07"),
    )
    baseline = tick_sensor(watched, SENSOR, instance).cursor
    universe_file.write_text("AAPL\n")
    data = tick_sensor(watched, SENSOR, instance, baseline)
    (request,) = data.run_requests
    assert request.asset_selection == [dg.AssetKey(["silver", "symbols"])]
    assert TICKERS_TAG not in request.tags
    execute_request(watched, SENSOR, request, request.asset_selection, instance)
    symbols = query(watched, "SELECT ticker, in_universe FROM silver.symbols ORDER BY ticker")
    assert dict(zip(symbols["ticker"], symbols["in_universe"], strict=True)) == {
        "AAPL": True,
        "KO": False,
    }
    # History stays.
    kept = query(watched, "SELECT count(*) AS n FROM silver.daily_bars WHERE ticker = 'KO'")
    assert kept["n"].iloc[0] == 5


def test_an_unreadable_universe_fails_the_tick_and_keeps_the_cursor(
    watched, instance, universe_file
):
    baseline = tick_sensor(watched, SENSOR, instance).cursor
    universe_file.write_text("AAPL\nnot a ticker!\n")
    with pytest.raises(Exception, match="not a ticker"):
        tick_sensor(watched, SENSOR, instance, baseline)


def test_added_ticker_run_fetches_only_that_ticker(watched, instance, universe_file):
    """The new ticker's run, narrowed to a week of raw -> silver to stay fast."""
    baseline = tick_sensor(watched, SENSOR, instance).cursor
    materialize(watched, select=DAILY, partition_range=("2024-06-03", "2024-06-07"))
    universe_file.write_text("AAPL\nKO\nMSFT\n")
    (request,) = tick_sensor(watched, SENSOR, instance, baseline).run_requests
    week = dg.RunRequest(
        tags={**request.tags, RANGE_START_TAG: "2024-06-03", RANGE_END_TAG: "2024-06-07"}
    )
    result = execute_request(
        watched,
        SENSOR,
        week,
        [dg.AssetKey(p.split("/")) for p in DAILY],
        instance,
    )
    raw_meta = {
        k: v.value
        for m in result.get_asset_materialization_events()
        if m.asset_key == dg.AssetKey(["raw", "daily_bars"])
        for k, v in m.materialization.metadata.items()
    }
    assert raw_meta["tickers_requested"] == 1
    assert raw_meta["provider_requests"] == 1
    bars = query(
        watched, "SELECT ticker, count(*) AS n FROM silver.daily_bars GROUP BY 1 ORDER BY 1"
    )
    assert dict(zip(bars["ticker"], bars["n"], strict=True)) == {"AAPL": 5, "KO": 5, "MSFT": 5}


def test_a_change_waits_for_daily_runs_in_progress(watched, instance, universe_file):
    baseline = tick_sensor(watched, SENSOR, instance).cursor
    universe_file.write_text("AAPL\nKO\nMSFT\n")
    busy = add_run(instance, {"marketflow/automation": "close"}, asset_selection=None)
    waiting = tick_sensor(watched, SENSOR, instance, baseline)
    assert not waiting.run_requests and busy in waiting.skip_message
    assert waiting.cursor == baseline  # the change is still pending
    instance.delete_run(busy)
    assert len(tick_sensor(watched, SENSOR, instance, baseline).run_requests) == 1
