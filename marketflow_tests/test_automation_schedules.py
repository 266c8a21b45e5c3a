"""The clock-driven automation: the close schedule, the intraday poll and the catch-up sensor,
around Thanksgiving 2024 (holiday 28 Nov, early close 13:00 on 29 Nov, then a weekend)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import dagster as dg
import pytest

from marketflow_assets import cadence
from marketflow_assets.automation.common import (
    AUTOMATION_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
)
from marketflow_assets.calendar import xnys
from marketflow_tests.automation_support import (
    add_run,
    at,
    et,
    record_materializations,
    target_keys,
    tick_schedule,
    tick_sensor,
)
from marketflow_tests.helpers import deployment_event_log_instance

RAW = dg.AssetKey(["raw", "daily_bars"])


@pytest.fixture
def instance():
    with deployment_event_log_instance() as instance:
        yield instance


@pytest.fixture
def real_clock(settings):
    """No pinned provider clock: schedules use their tick time."""
    return dataclasses.replace(settings, simulator_now=None)


# -- daily_close ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("when", "session"),
    [
        (et(2024, 11, 27, 16, 15), "2024-11-27"),  # normal day, after the 16:00 close
        (et(2024, 11, 29, 13, 15), "2024-11-29"),  # early close at 13:00
    ],
)
def test_close_schedule_requests_the_session_that_just_closed(real_clock, instance, when, session):
    data = tick_schedule(real_clock, "daily_close", instance, when)
    (request,) = data.run_requests
    assert request.partition_key == session
    assert request.run_key == f"close:{session}"
    assert request.tags[AUTOMATION_TAG] == "close"
    assert request.tags["dagster/partition"] == session
    # The whole daily + reference path, one run.
    keys = target_keys(real_clock, "daily_close")
    graph_daily = set(cadence.daily_assets.resolve(_graph(real_clock)))
    graph_reference = set(cadence.reference_assets.resolve(_graph(real_clock)))
    assert keys == graph_daily | graph_reference
    assert {"raw/daily_bars", "gold/daily_features", "silver/symbols"} <= {
        k.to_user_string() for k in keys
    }


@pytest.mark.parametrize(
    ("when", "reason"),
    [
        (et(2024, 11, 28, 13, 15), "holiday"),
        (et(2024, 11, 28, 16, 15), "holiday"),
        (et(2024, 11, 29, 16, 15), "closed early at 13:00"),  # handled by the 13:15 tick
        (et(2024, 11, 30, 16, 15), "weekend"),
        (et(2024, 11, 27, 13, 15), "still trading"),  # a normal day's early tick
    ],
)
def test_close_schedule_skips_with_the_reason(real_clock, instance, when, reason):
    data = tick_schedule(real_clock, "daily_close", instance, when)
    assert not data.run_requests
    assert reason in data.skip_message


def test_close_schedule_follows_the_pinned_provider_clock(settings, instance):
    # MARKETFLOW_SIMULATOR_NOW wins over the tick time: demos and tests run in simulated time.
    pinned = at(settings, et(2024, 11, 29, 13, 30))
    data = tick_schedule(pinned, "daily_close", instance, et(2026, 1, 5, 16, 15))
    assert [r.partition_key for r in data.run_requests] == ["2024-11-29"]


def test_close_schedule_is_described_and_running_by_default(settings):
    from marketflow_assets.definitions import build_definitions

    schedule = build_definitions(settings).resolve_schedule_def("daily_close")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.execution_timezone == "America/New_York"
    assert schedule.description


# -- intraday_poll -------------------------------------------------------------------------------
def test_intraday_polls_the_open_session_every_slot_once(settings, instance):
    morning = at(settings, et(2024, 11, 27, 10, 2))
    data = tick_sensor(morning, "intraday_poll", instance)
    (request,) = data.run_requests
    assert request.partition_key == "2024-11-27"
    assert request.tags[AUTOMATION_TAG] == "intraday"
    assert target_keys(settings, "intraday_poll") == set(
        cadence.intraday_assets.resolve(_graph(settings))
    )
    # Same slot again (cursor): nothing; the next slot: a new poll.
    again = tick_sensor(morning, "intraday_poll", instance, cursor=data.cursor)
    assert not again.run_requests and "already polled" in again.skip_message
    later = tick_sensor(
        at(settings, et(2024, 11, 27, 10, 7)), "intraday_poll", instance, data.cursor
    )
    assert [r.partition_key for r in later.run_requests] == ["2024-11-27"]
    assert later.run_requests[0].run_key != request.run_key


def test_intraday_waits_for_the_previous_poll(settings, instance):
    add_run(instance, {AUTOMATION_TAG: "intraday", "dagster/partition": "2024-11-27"})
    data = tick_sensor(at(settings, et(2024, 11, 27, 11, 0)), "intraday_poll", instance)
    assert not data.run_requests and "still in progress" in data.skip_message


def test_intraday_stops_at_the_early_close_with_one_final_poll(settings, instance):
    trading = tick_sensor(at(settings, et(2024, 11, 29, 12, 55)), "intraday_poll", instance)
    assert [r.partition_key for r in trading.run_requests] == ["2024-11-29"]
    # 13:05 on the early-close day: no more regular polls, one final poll of the session.
    final = tick_sensor(
        at(settings, et(2024, 11, 29, 13, 5)), "intraday_poll", instance, trading.cursor
    )
    (request,) = final.run_requests
    assert request.partition_key == "2024-11-29"
    assert request.tags["marketflow/poll"] == "final"
    after = tick_sensor(
        at(settings, et(2024, 11, 29, 14, 0)), "intraday_poll", instance, final.cursor
    )
    assert not after.run_requests
    assert "closed at 13:00" in after.skip_message and "(early close)" in after.skip_message


@pytest.mark.parametrize(
    ("when", "reason"),
    [
        (et(2024, 11, 28, 11, 0), "holiday"),  # Thanksgiving
        (et(2024, 11, 30, 11, 0), "weekend"),
    ],
)
def test_intraday_skips_closed_days_after_the_final_poll(settings, instance, when, reason):
    last = xnys().latest_closed_session(when)
    data = tick_sensor(at(settings, when), "intraday_poll", instance, cursor=f"{last}:final")
    assert not data.run_requests
    assert reason in data.skip_message


def test_intraday_is_stopped_by_default(settings):
    from marketflow_assets.definitions import build_definitions

    sensor = build_definitions(settings).resolve_sensor_def("intraday_poll")
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert sensor.minimum_interval_seconds == settings.intraday_poll_minutes * 60


# -- daily_catch_up ------------------------------------------------------------------------------
def _graph(settings):
    from marketflow_assets.definitions import build_definitions

    return build_definitions(settings).resolve_asset_graph()


def _partitioned_daily(settings) -> list[dg.AssetKey]:
    graph = _graph(settings)
    return [
        k for k in cadence.daily_assets.resolve(graph) if graph.get(k).partitions_def is not None
    ]


def test_catch_up_never_initializes_an_empty_deployment(settings, instance):
    data = tick_sensor(at(settings, et(2024, 12, 4, 18, 0)), "daily_catch_up", instance)
    assert not data.run_requests and "never materialized" in data.skip_message


def test_catch_up_requests_missed_sessions_as_one_range_run(settings, instance):
    keys = _partitioned_daily(settings)
    # Built through 2024-11-26, then the deployment was down until Wednesday 4 Dec evening.
    done = [
        s.isoformat() for s in xnys().sessions_in_range(dt.date(2024, 11, 1), dt.date(2024, 11, 26))
    ]
    record_materializations(instance, keys, done)
    now = at(settings, et(2024, 12, 4, 18, 0))
    data = tick_sensor(now, "daily_catch_up", instance)
    (request,) = data.run_requests
    # 27 Nov, 29 Nov (early close), 2, 3 and 4 Dec: Thanksgiving and the weekend are not sessions.
    assert request.tags[RANGE_START_TAG] == "2024-11-27"
    assert request.tags[RANGE_END_TAG] == "2024-12-04"
    assert request.tags["marketflow/missing_sessions"] == "5"
    assert request.tags[AUTOMATION_TAG] == "catch_up"
    assert request.partition_key is None

    # While that run is in progress, nothing more.
    add_run(instance, dict(request.tags), asset_selection=keys)
    waiting = tick_sensor(now, "daily_catch_up", instance, data.cursor)
    assert not waiting.run_requests and "waiting for it" in waiting.skip_message


def test_catch_up_leaves_the_latest_session_to_the_close_schedule(settings, instance):
    keys = _partitioned_daily(settings)
    record_materializations(instance, keys, ["2024-12-02", "2024-12-03"])
    # 16:30 on 4 Dec: the close schedule's 16:15 run is due/running; the catch-up leaves it.
    data = tick_sensor(at(settings, et(2024, 12, 4, 16, 30)), "daily_catch_up", instance)
    assert not data.run_requests and "every daily asset is materialized" in data.skip_message
    # Two hours later it is a missed session.
    late = tick_sensor(at(settings, et(2024, 12, 4, 18, 30)), "daily_catch_up", instance)
    (request,) = late.run_requests
    assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == ("2024-12-04",) * 2


def test_catch_up_ignores_ticker_scoped_runs_and_backs_off_after_a_failure(settings, instance):
    keys = _partitioned_daily(settings)
    record_materializations(instance, keys, ["2024-12-02"])
    # A one-ticker run (e.g. a file drop) covered 3 Dec: other tickers still miss it.
    scoped = add_run(instance, {"marketflow/tickers": "AAPL"}, dg.DagsterRunStatus.SUCCESS, keys)
    record_materializations(instance, keys, ["2024-12-03"], run_id=scoped)
    now = at(settings, et(2024, 12, 3, 19, 0))
    first = tick_sensor(now, "daily_catch_up", instance)
    (request,) = first.run_requests
    assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == ("2024-12-03",) * 2
    # The run failed (nothing materialized): the same range is not relaunched at once.
    add_run(instance, dict(request.tags), dg.DagsterRunStatus.FAILURE, keys)
    again = tick_sensor(now, "daily_catch_up", instance, first.cursor)
    assert not again.run_requests and "next attempt in" in again.skip_message
    # After the back-off it is retried, with a new run key.
    state = json.loads(first.cursor)
    state["requested_at"] -= 3600
    retry = tick_sensor(now, "daily_catch_up", instance, json.dumps(state))
    (second,) = retry.run_requests
    assert second.run_key != request.run_key


def test_catch_up_waits_for_a_backfill_in_progress(settings, instance):
    keys = _partitioned_daily(settings)
    record_materializations(instance, keys, ["2024-12-02"])
    add_run(
        instance,
        {RANGE_START_TAG: "2024-12-03", RANGE_END_TAG: "2024-12-03"},
        dg.DagsterRunStatus.STARTED,
        [RAW],
    )
    data = tick_sensor(at(settings, et(2024, 12, 3, 19, 0)), "daily_catch_up", instance)
    assert not data.run_requests and "started" in data.skip_message
