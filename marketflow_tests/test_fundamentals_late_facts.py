"""A fact known late (its known_at before sessions gold already built) makes gold rebuild exactly
those sessions: the statements fetch of Friday 3 May 2024 is the last one before gold is built
through Friday 17 May, so KO's release of 8 May (known from 9 May) reaches silver only with the
fetch of 17 May; the close runs had built 9-17 May without it."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import pandas as pd
import pytest

from marketflow_assets.automation.common import (
    AUTOMATION_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
)
from marketflow_assets.resources import TICKERS_TAG
from marketflow_tests.automation_support import execute_request, tick_sensor
from marketflow_tests.helpers import (
    deployment_event_log_instance,
    make_settings,
    materialize,
    query,
)

pytestmark = pytest.mark.slow  # four Dagster runs over two weeks of one ticker
SENSOR = "late_fact_rebuilds"
PRICES = ["raw/daily_bars", "bronze/daily_bars", "silver/corporate_actions", "silver/daily_bars"]
STATEMENTS = ["raw/financial_statements", "bronze/financial_statements", "silver/financial_facts"]
GOLD = dg.AssetKey(["gold", "fundamentals_daily"])
FETCH_1 = dt.datetime(2024, 5, 3, 22, 0, tzinfo=dt.UTC)
FETCH_2 = dt.datetime(2024, 5, 17, 22, 0, tzinfo=dt.UTC)
SESSIONS = ("2024-05-06", "2024-05-17")
KNOWN = pd.Timestamp("2024-05-09")  # KO's Q1 2024 release (8 May, simulator) + 1 day


def gold_rows(settings) -> pd.DataFrame:
    return query(
        settings, "SELECT * FROM gold.fundamentals_daily ORDER BY ticker, session_date"
    ).set_index("session_date")


@pytest.fixture(scope="module")
def instance():
    with deployment_event_log_instance() as instance:
        yield instance


@pytest.fixture(scope="module")
def built(tmp_path_factory, instance):
    """Statements fetched on 3 May; prices and gold built through 17 May; the sensor's first
    tick (nothing stale yet) gives the cursor; then the fetch of 17 May brings the release."""
    home = tmp_path_factory.mktemp("late") / "home"
    first = make_settings(home, tickers="KO", simulator_now=FETCH_1)
    assert materialize(first, select=STATEMENTS).success
    later = make_settings(home, tickers="KO", simulator_now=FETCH_2)
    assert materialize(later, select=[*PRICES, "gold/fundamentals_daily"], partition_range=SESSIONS)
    quiet = tick_sensor(later, SENSOR, instance)
    before = gold_rows(later)
    assert materialize(later, select=STATEMENTS).success
    return later, quiet, before


def test_gold_built_after_its_facts_needs_nothing(built):
    _, quiet, before = built
    assert not quiet.run_requests
    assert "already reflects" in quiet.skip_message
    assert json.loads(quiet.cursor)["fetches"]
    assert (before["latest_known_at"] < KNOWN).all()  # built before the release was fetched


def test_a_late_release_rebuilds_the_sessions_from_its_known_at(built, instance):
    settings, quiet, before = built

    data = tick_sensor(settings, SENSOR, instance, quiet.cursor)

    (request,) = data.run_requests
    assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == (
        "2024-05-09",
        "2024-05-17",
    )
    assert (request.tags[TICKERS_TAG], request.tags[AUTOMATION_TAG]) == ("KO", "late_facts")
    assert execute_request(settings, SENSOR, request, keys=[GOLD]).success

    after = gold_rows(settings)
    rebuilt = after.index >= KNOWN
    assert (after.loc[rebuilt, "latest_known_at"] == KNOWN).all()
    assert (after.loc[rebuilt, "latest_period_end"] == pd.Timestamp("2024-03-31")).all()
    assert not after.loc[rebuilt, "pe_ttm"].equals(before.loc[rebuilt, "pe_ttm"])
    # Sessions before the release was known keep their rows, to the bit.
    pd.testing.assert_frame_equal(after.loc[~rebuilt], before.loc[~rebuilt])

    again = tick_sensor(settings, SENSOR, instance, data.cursor)
    assert not again.run_requests
    assert "no fact version first seen" in again.skip_message
    # From scratch (no cursor) every version is re-examined: gold now reflects them all.
    fresh = tick_sensor(settings, SENSOR, instance)
    assert not fresh.run_requests and "already reflects" in fresh.skip_message
