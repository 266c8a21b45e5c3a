"""Fundamentals end to end on the simulator: restatements kept as versions and used only once
known, a look-ahead property test recomputing ratios by hand from the facts known at each
session, and incremental runs equal to range runs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import shutil

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from marketflow_assets.instance.batched_events import batched_ephemeral_instance
from marketflow_assets.sources.simulator import SimulatorFaults, SimulatorSource
from marketflow_assets.sources.simulator_fundamentals import SimulatorFundamentals
from marketflow_tests.helpers import FRIDAY_EVENING, make_settings, materialize, query

PRICES = ["raw/daily_bars", "bronze/daily_bars", "silver/corporate_actions", "silver/daily_bars"]
FUNDAMENTALS = [
    "raw/financial_statements",
    "bronze/financial_statements",
    "silver/financial_facts",
    "gold/fundamentals_daily",
]
FAULTS = "restatements=0.5"
TICKERS = "KO,CSCO,MSFT"
F1 = dt.datetime(2024, 3, 1, 22, 0, tzinfo=dt.UTC)  # first fetch (a Friday evening)
F2 = FRIDAY_EVENING  # 2024-06-07: a later fetch, after KO's and CSCO's restatements
RANGE_1 = ("2024-01-02", "2024-03-01")
RANGE_2 = ("2024-03-04", "2024-06-07")
pytestmark = pytest.mark.slow  # three Dagster runs over ~110 sessions


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Build at F1 over RANGE_1, then at F2 over RANGE_1 + RANGE_2 (gold rebuilt for both)."""
    home = tmp_path_factory.mktemp("fundamentals") / "home"
    first = make_settings(home, tickers=TICKERS, simulator_faults=FAULTS, simulator_now=F1)
    assert materialize(first, select=[*PRICES, *FUNDAMENTALS], partition_range=RANGE_1).success
    before = query(first, "SELECT * FROM gold.fundamentals_daily ORDER BY ticker, session_date")
    later = dataclasses.replace(first, simulator_now=F2)
    assert materialize(later, select=[*PRICES, *FUNDAMENTALS], partition_range=RANGE_2).success
    assert materialize(later, select="gold/fundamentals_daily", partition_range=RANGE_1).success
    return later, before


def restated_quarter() -> tuple[str, pd.Timestamp]:
    """KO's quarter ended 2023-12-31: released 2024-02-02, restated 2024-05-06 (simulator
    truth; the test asserts it, so a change of the simulator shows here first)."""
    truth = SimulatorFundamentals(
        SimulatorSource(seed=0, faults=SimulatorFaults.parse(FAULTS))
    ).quarters("KO", F2.date())
    row = truth[truth["period_end"] == dt.date(2023, 12, 31)].iloc[0]
    assert row["announced"] <= pd.Timestamp(F1.date()) < row["restated_on"]
    assert row["restated_on"] <= pd.Timestamp(F2.date())
    return "KO", row["restated_on"]


def test_a_restatement_is_a_new_version_and_both_stay_in_silver(built):
    settings, _ = built
    ticker, restated_on = restated_quarter()
    versions = query(
        settings,
        "SELECT * FROM silver.financial_facts WHERE ticker = ? AND line_item = 'NetIncome' "
        "AND period_type = 'quarterly' AND period_end = DATE '2023-12-31' ORDER BY version",
        [ticker],
    )
    assert versions["version"].tolist() == [1, 2]
    v1, v2 = versions.iloc[0], versions.iloc[1]
    assert v1["known_at_rule"] == "earnings_date+1d"
    assert v1["known_at"] == pd.Timestamp("2024-02-03")  # released 2024-02-02 after the close
    assert (v2["known_at_rule"], v2["known_at"]) == ("first_seen", pd.Timestamp(F2.date()))
    assert v1["superseded_at"] == v2["first_seen_at"] == pd.Timestamp(F2)
    assert pd.isna(v2["superseded_at"])
    assert v2["value"] != v1["value"]
    assert v2["known_at"] >= restated_on  # never before the provider showed it


def test_sessions_before_the_restatement_was_known_are_unchanged(built):
    settings, before = built
    after = query(
        settings,
        "SELECT * FROM gold.fundamentals_daily WHERE session_date <= DATE '2024-03-01' "
        "ORDER BY ticker, session_date",
    )
    assert len(before) == len(after) > 0
    pd.testing.assert_frame_equal(before, after)


def test_sessions_after_it_use_the_new_value(built):
    settings, _ = built
    facts = query(settings, "SELECT * FROM silver.financial_facts")
    bars = query(settings, "SELECT ticker, session_date, close FROM silver.daily_bars")
    row = query(
        settings,
        "SELECT * FROM gold.fundamentals_daily WHERE ticker = 'KO' AND session_date = ?",
        [F2.date()],
    ).iloc[0]
    expected = by_hand(facts, bars, "KO", pd.Timestamp(F2.date()))
    assert row["net_margin_ttm"] == pytest.approx(expected["net_margin_ttm"], rel=1e-12)
    old = facts[~((facts["version"] == 2) & (facts["known_at"] == pd.Timestamp(F2.date())))]
    assert by_hand(old, bars, "KO", pd.Timestamp(F2.date()))["net_margin_ttm"] != pytest.approx(
        row["net_margin_ttm"], rel=1e-9
    )


# -- the facts known at a session, by hand --------------------------------------------------
def known_at_session(facts: pd.DataFrame, ticker: str, session: pd.Timestamp) -> pd.DataFrame:
    """Per fact, the version with the latest known_at on or before the session."""
    mine = facts[(facts["ticker"] == ticker) & (facts["known_at"] <= session)]
    mine = mine[mine["period_end"] > session - pd.Timedelta(days=800)]
    mine = mine.sort_values(["known_at", "version"])
    key = ["statement", "period_type", "period_end", "line_item"]
    return mine.drop_duplicates(key, keep="last")


def ttm(state: pd.DataFrame, item: str) -> float:
    quarters = state[(state["line_item"] == item) & (state["period_type"] == "quarterly")]
    q = dict(zip(quarters["period_end"], quarters["value"], strict=True))
    annual = state[(state["line_item"] == item) & (state["period_type"] == "annual")]
    for end, value in zip(annual["period_end"], annual["value"], strict=True):
        others = [
            v
            for e, v in q.items()
            if end - pd.Timedelta(days=350) < e < end - pd.Timedelta(days=20)
        ]
        if end not in q and len(others) == 3:
            q[end] = value - sum(others)  # fiscal Q4 from the annual figure
    last4 = sorted(q)[-4:]
    latest_year = annual.sort_values("period_end").iloc[-1] if len(annual) else None
    if (
        len(last4) == 4
        and 250 <= (last4[-1] - last4[0]).days <= 300
        and (latest_year is None or last4[-1] >= latest_year["period_end"])
    ):
        return sum(q[e] for e in last4)
    return latest_year["value"] if latest_year is not None else np.nan


def by_hand(facts, bars, ticker, session) -> dict:
    state = known_at_session(facts, ticker, session)
    balance = state[state["statement"] == "balance"]
    end = balance["period_end"].max()
    sheet = balance[balance["period_end"] == end].sort_values("period_type")  # quarterly last
    value = sheet.drop_duplicates("line_item", keep="last").set_index("line_item")["value"]
    close = bars[(bars["ticker"] == ticker) & (bars["session_date"] == session)]["close"].iloc[0]
    # No split in these tickers' 2023-2024 history: shares are as reported.
    mcap = close * value["OrdinarySharesNumber"]
    revenue, net = ttm(state, "TotalRevenue"), ttm(state, "NetIncome")
    return {
        "market_cap": mcap,
        "pe_ttm": mcap / net if net > 0 else np.nan,
        "pb": mcap / value["StockholdersEquity"],
        "ps_ttm": mcap / revenue,
        "net_margin_ttm": net / revenue,
        "current_ratio": value["CurrentAssets"] / value["CurrentLiabilities"],
        "latest_known_at": state["known_at"].max(),
        "latest_period_end": state["period_end"].max(),
    }


def test_look_ahead_property_every_sampled_row_equals_the_facts_known_then(built):
    """Random (seeded) gold rows across tickers and sessions, before and after restatements:
    each equals the ratios recomputed from the facts known at its session, and no fact known
    later has been used."""
    settings, _ = built
    facts = query(settings, "SELECT * FROM silver.financial_facts")
    bars = query(settings, "SELECT ticker, session_date, close FROM silver.daily_bars")
    gold = query(settings, "SELECT * FROM gold.fundamentals_daily")
    assert set(gold["ticker"]) == set(TICKERS.split(","))
    sample = gold.iloc[random.Random(14).sample(range(len(gold)), 40)]
    for row in sample.itertuples(index=False):
        expected = by_hand(facts, bars, row.ticker, row.session_date)
        assert row.latest_known_at <= row.session_date
        for name, value in expected.items():
            got = getattr(row, name)
            if isinstance(value, float) and np.isnan(value):
                assert pd.isna(got), (row.ticker, row.session_date, name)
            elif isinstance(value, pd.Timestamp):
                assert got == value, (row.ticker, row.session_date, name)
            else:
                assert got == pytest.approx(value, rel=1e-9), (row.ticker, row.session_date, name)


def test_a_new_session_alone_equals_the_range_run(built, tmp_path):
    settings, _ = built
    last = F2.date().isoformat()
    ranged = query(
        settings,
        "SELECT * FROM gold.fundamentals_daily WHERE session_date = ? ORDER BY ticker",
        [last],
    )
    result = materialize(settings, select="gold/fundamentals_daily", partition=last)
    assert result.success
    alone = query(
        settings,
        "SELECT * FROM gold.fundamentals_daily WHERE session_date = ? ORDER BY ticker",
        [last],
    )
    pd.testing.assert_frame_equal(ranged, alone)
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["no_look_ahead"] and checks["outliers"]


def test_coverage_judges_each_session_from_the_tickers_first_fundamentals(built, tmp_path):
    """`coverage` (WARN) passes the sessions before a ticker's first statement was known and
    fails, session by session, an equity with no fundamentals at all."""
    settings, _ = built
    home = tmp_path / "home"
    shutil.copytree(settings.home, home)
    copy = dataclasses.replace(settings, home=home)
    profiles = ["raw/company_profiles", "bronze/company_profiles", "silver/symbols"]
    gold = materialize(copy, select=[*profiles, "gold/fundamentals_daily"], partition_range=RANGE_2)
    assert set(query(copy, "SELECT quote_type FROM silver.symbols")["quote_type"]) == {"EQUITY"}
    coverage = [e for e in gold.get_asset_check_evaluations() if e.check_name == "coverage"]
    assert coverage and all(e.passed for e in coverage)

    with duckdb.connect(str(copy.warehouse)) as con:
        con.execute("DELETE FROM silver.financial_facts WHERE ticker = 'CSCO'")
    instance = batched_ephemeral_instance()
    result = materialize(
        copy, select="gold/fundamentals_daily", partition_range=RANGE_2, instance=instance
    )
    whole = next(e for e in result.get_asset_check_evaluations() if e.check_name == "coverage")
    assert not whole.passed and whole.severity == dg.AssetCheckSeverity.WARN
    history = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey(["gold", "fundamentals_daily"]), "coverage"), limit=1000
    )
    failed = {r.partition for r in history if r.partition and r.status.value == "FAILED"}
    sessions = query(
        copy,
        "SELECT DISTINCT strftime(session_date, '%Y-%m-%d') AS s FROM silver.daily_bars "
        "WHERE session_date BETWEEN ? AND ?",
        list(RANGE_2),
    )["s"]
    assert failed == set(sessions)
