"""The daily spine end to end through Dagster: raw -> bronze -> silver on the simulator."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from marketflow_assets.definitions import build_definitions
from marketflow_assets.sources.simulator import SimulatorSource
from marketflow_assets.storage.object_store import LocalObjectStore
from marketflow_assets.storage.raw_lake import RawLake
from marketflow_tests.checks_support import DAILY
from marketflow_tests.helpers import (
    make_settings,
    materializations,
    materialize,
    output_metadata,
    query,
    table,
)

PROFILES = ["raw/company_profiles", "bronze/company_profiles", "silver/symbols"]
RANGE = ("2024-05-09", "2024-06-06")  # 20 sessions


def lake(settings) -> RawLake:
    return RawLake(LocalObjectStore(settings.lake_root))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """RANGE of the daily spine and the profiles in one run, built once per module: (settings,
    result). Tests only read it; a test that runs more work takes a copy (`copy_of`)."""
    settings = make_settings(tmp_path_factory.mktemp("daily") / "home")
    return settings, materialize(settings, select=[*DAILY, *PROFILES], partition_range=RANGE)


def copy_of(built, tmp_path):
    settings, _ = built
    shutil.copytree(settings.home, tmp_path / "home")
    return dataclasses.replace(settings, home=tmp_path / "home")


def test_twenty_sessions_in_one_run_then_load_by_key(built):
    settings, result = built
    assert result.success
    # One run; each partitioned asset records a materialization for each of the 20 sessions.
    partitions = {m.partition for m in materializations(result, ["silver", "daily_bars"])}
    assert len(partitions) == 20
    bars = table(settings, "silver.daily_bars")
    assert bars["session_date"].nunique() == 20
    assert set(bars["ticker"]) == {"AAPL", "MSFT", "KO", "TSLA", "^GSPC"}
    assert (bars["source"] == "simulator").all()

    defs = build_definitions(settings)
    for key, columns in {
        ("raw", "daily_bars"): {"Ticker", "Date", "Close", "Adj Close", "_fetch_id", "_object_key"},
        ("bronze", "daily_bars"): {"ticker", "ts", "interval", "close", "fetched_at"},
        ("silver", "daily_bars"): {
            "ticker",
            "session_date",
            "close",
            "adj_close",
            "dividend",
            "split_ratio",
        },
    }.items():
        frame = defs.load_asset_value(dg.AssetKey(list(key)), partition_key="2024-06-03")
        assert len(frame) == 5, key
        assert columns <= set(frame.columns), key
    silver = defs.load_asset_value(
        dg.AssetKey(["silver", "daily_bars"]), partition_key="2024-06-03"
    )
    assert (silver["session_date"] == pd.Timestamp("2024-06-03")).all()


def test_silver_matches_simulator_ground_truth_and_provider_adj_close(built):
    settings, _ = built
    sim = SimulatorSource(seed=0)
    bars = table(settings, "silver.daily_bars", "ticker, session_date")
    for ticker, rows in bars.groupby("ticker"):
        hist = sim.history(ticker, dt.date(2024, 6, 6))
        idx = np.searchsorted(
            hist.sessions, rows["session_date"].to_numpy().astype("datetime64[D]")
        )
        np.testing.assert_allclose(rows["close"], hist.close[idx], rtol=1e-12)
        np.testing.assert_array_equal(rows["volume"], hist.volume[idx])
    provider = query(
        settings,
        "SELECT s.ticker, s.adj_close, b.adj_close AS provider FROM silver.daily_bars s "
        "JOIN bronze.daily_bars b USING (ticker, session_date)",
    )
    np.testing.assert_allclose(provider["adj_close"], provider["provider"], rtol=1e-6)


def test_rematerializing_is_idempotent_and_fetches_nothing_new(built, tmp_path):
    settings = copy_of(built, tmp_path)
    before = {t: table(settings, t, "ALL") for t in ("bronze.daily_bars", "silver.daily_bars")}
    manifests_before = len(lake(settings).manifests("simulator", "daily_bars"))

    second = materialize(settings, select=DAILY, partition_range=RANGE)
    assert output_metadata(second, ["raw", "daily_bars"])["provider_requests"] == 0
    assert len(lake(settings).manifests("simulator", "daily_bars")) == manifests_before
    for name, frame in before.items():
        pd.testing.assert_frame_equal(table(settings, name, "ALL"), frame)


def test_ticker_subset_run_leaves_other_tickers_untouched(built, tmp_path):
    settings = copy_of(built, tmp_path)
    before = table(settings, "silver.daily_bars", "ALL")
    # Re-fetch KO only, with the clock later: KO's rows are rebuilt, the others are not touched.
    later = dataclasses.replace(settings, simulator_now=dt.datetime(2024, 6, 10, 22, tzinfo=dt.UTC))
    result = materialize(
        later,
        select=DAILY,
        partition_range=RANGE,
        tickers=["KO"],
        run_config={"ops": {"raw__daily_bars": {"config": {"refresh": True}}}},
    )
    assert result.success
    after = table(settings, "silver.daily_bars", "ALL")
    others_before = before[before["ticker"] != "KO"].reset_index(drop=True)
    others_after = after[after["ticker"] != "KO"].reset_index(drop=True)
    pd.testing.assert_frame_equal(others_after, others_before)
    ko = after[after["ticker"] == "KO"]
    assert len(ko) == 20 and (ko["fetched_at"] == pd.Timestamp("2024-06-10 22:00", tz="UTC")).all()


def test_adding_a_ticker_fetches_only_that_ticker(built, tmp_path):
    settings = copy_of(built, tmp_path)
    grown = dataclasses.replace(settings, tickers=settings.tickers + ",NVDA")
    result = materialize(grown, select=DAILY, partition_range=RANGE)
    newest = lake(settings).manifests("simulator", "daily_bars")[-1]
    assert newest.request["tickers"] == ["NVDA"]
    assert output_metadata(result, ["raw", "daily_bars"])["provider_requests"] == 1
    assert table(grown, "silver.daily_bars").groupby("ticker").size().to_dict()["NVDA"] == 20


def test_refresh_in_run_config_fetches_again(settings):
    materialize(settings, select=["raw/daily_bars"], partition="2024-06-03")
    result = materialize(
        settings,
        select=["raw/daily_bars"],
        partition="2024-06-03",
        run_config={"ops": {"raw__daily_bars": {"config": {"refresh": True}}}},
    )
    assert output_metadata(result, ["raw", "daily_bars"])["provider_requests"] == 1
    assert len(lake(settings).manifests("simulator", "daily_bars")) == 2


def test_a_session_fetched_while_trading_is_fetched_again_after_the_close(settings):
    trading = dataclasses.replace(
        settings, simulator_now=dt.datetime(2024, 6, 7, 15, 0, tzinfo=dt.UTC)
    )
    materialize(trading, select=DAILY, partition="2024-06-07")
    provisional = table(settings, "silver.daily_bars")
    result = materialize(settings, select=DAILY, partition="2024-06-07")  # 22:00, after the close
    assert output_metadata(result, ["raw", "daily_bars"])["provider_requests"] == 1
    final = table(settings, "silver.daily_bars")
    sim = SimulatorSource(seed=0)
    for ticker, row in final.set_index("ticker").iterrows():
        assert row["close"] == pytest.approx(
            sim.history(ticker, dt.date(2024, 6, 7)).close[-1], rel=1e-12
        )
    assert (provisional["fetched_at"] < final["fetched_at"]).all()


def test_split_between_fetches_gives_the_same_silver_as_one_fetch(tmp_path):
    """TSLA splits 5:1 on 2014-04-21 in the simulator (seed 0); KO pays dividends meanwhile."""
    assert (
        5.0
        in SimulatorSource(seed=0)
        .corporate_actions("TSLA", dt.date(2014, 6, 1))
        .set_index("ex_date")
        .loc[dt.date(2014, 4, 21)]
        .values
    )
    tickers = "TSLA,KO"
    before_split = make_settings(
        tmp_path / "two", tickers=tickers, simulator_now=dt.datetime(2014, 4, 11, 22, tzinfo=dt.UTC)
    )
    after_split = dataclasses.replace(
        before_split, simulator_now=dt.datetime(2014, 5, 30, 22, tzinfo=dt.UTC)
    )
    materialize(before_split, select=DAILY, partition_range=("2014-03-03", "2014-04-11"))
    materialize(after_split, select=DAILY, partition_range=("2014-04-14", "2014-05-30"))
    # Silver's adjusted history is rebuilt for the earlier sessions (what the corporate-action
    # automation does); traded prices there are unchanged by the split.
    materialize(
        after_split, select=["silver/daily_bars"], partition_range=("2014-03-03", "2014-04-11")
    )

    one = make_settings(
        tmp_path / "one", tickers=tickers, simulator_now=dt.datetime(2014, 5, 30, 22, tzinfo=dt.UTC)
    )
    materialize(one, select=DAILY, partition_range=("2014-03-03", "2014-05-30"))

    columns = [
        "ticker",
        "session_date",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "adj_open",
        "adj_high",
        "adj_low",
        "adj_close",
        "adj_volume",
        "dividend",
        "split_ratio",
    ]
    two_fetches = table(before_split, "silver.daily_bars", "ticker, session_date")[columns]
    one_fetch = table(one, "silver.daily_bars", "ticker, session_date")[columns]
    pd.testing.assert_frame_equal(two_fetches, one_fetch, rtol=1e-12)
    tsla = one_fetch[one_fetch["ticker"] == "TSLA"].set_index("session_date")
    assert tsla.loc["2014-04-21", "split_ratio"] == 5.0
    # Traded prices jump by the split; adjusted prices are continuous across it.
    assert tsla.loc["2014-04-17", "close"] / tsla.loc["2014-04-21", "close"] > 3
    assert 0.8 < tsla.loc["2014-04-17", "adj_close"] / tsla.loc["2014-04-21", "adj_close"] < 1.25


def test_session_that_has_not_opened_is_refused(settings):
    saturday = dataclasses.replace(
        settings, simulator_now=dt.datetime(2024, 6, 8, 15, tzinfo=dt.UTC)
    )
    result = materialize(
        saturday, select=["raw/daily_bars"], partition="2024-06-10", raise_on_error=False
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data.error)
    assert "2024-06-10" in message and "not opened yet" in message and "33551" in message


def test_unknown_ticker_is_named_and_does_not_fail_the_others(settings):
    mixed = dataclasses.replace(settings, tickers="AAPL,ZZZZ", simulator_faults="unknown=ZZZZ")
    result = materialize(mixed, select=DAILY, partition="2024-06-03")
    assert result.success
    missing = output_metadata(result, ["raw", "daily_bars"])["tickers_without_data"]
    assert "ZZZZ" in missing and "delisted" in missing["ZZZZ"]
    assert set(table(mixed, "silver.daily_bars")["ticker"]) == {"AAPL"}


def test_only_unknown_tickers_fail_with_their_names(settings):
    unknown = dataclasses.replace(settings, tickers="ZZZZ", simulator_faults="unknown=ZZZZ")
    result = materialize(
        unknown, select=["raw/daily_bars"], partition="2024-06-03", raise_on_error=False
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "ZZZZ" in str(failure.event_specific_data.error)


def test_rate_limits_are_retried(settings):
    flaky = dataclasses.replace(settings, simulator_faults="rate_limit=0.5", retry_base_seconds=0.0)
    result = materialize(flaky, select=["raw/daily_bars"], partition_range=RANGE)
    assert result.success
    assert len(lake(settings).manifests("simulator", "daily_bars")) == 1
