"""A universe on three exchanges through the real graph: two New York tickers, one London (pence)
and one Tokyo ticker, over a range with a London-only holiday (2024-05-06, early May bank
holiday; Tokyo is closed too), a Tokyo-only holiday (2024-05-03) and a New York-only holiday
(2024-06-19, Juneteenth).

Each ticker must land on its own exchange's sessions and regular hours (in UTC, with Tokyo's
lunch break), no check may call another exchange's holiday a missing bar or a non-session date,
and the cross-ticker marts must never mix exchanges or currencies."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import exchange_calendars as xcals
import pandas as pd
import pytest

from marketflow_assets.definitions import build_definitions
from marketflow_tests.checks_support import evaluations
from marketflow_tests.helpers import make_settings, materialize, query, table

pytestmark = [pytest.mark.slow]

TICKERS = ("AAPL", "MSFT", "AZN.L", "6758.T")
MICS = {"AAPL": "XNYS", "MSFT": "XNYS", "AZN.L": "XLON", "6758.T": "XTKS"}
CLOCK = dt.datetime(2024, 6, 21, 22, 0, tzinfo=dt.UTC)  # Friday evening, every exchange closed
DAILY_RANGE = ("2024-05-02", "2024-06-21")
INTRADAY_RANGE = ("2024-06-18", "2024-06-20")
DAILY = [
    "raw/daily_bars",
    "bronze/daily_bars",
    "silver/corporate_actions",
    "silver/daily_bars",
    "raw/company_profiles",
    "bronze/company_profiles",
    "silver/symbols",
    "gold/daily_features",
    "gold/sector_daily",
]
INTRADAY = [
    "raw/intraday_bars_1m",
    "bronze/intraday_bars_1m",
    "silver/session_hours",
    "silver/intraday_bars_1m",
    "silver/rejected_bars",
    "gold/intraday_daily_summary",
    "gold/hourly_bars",
]


def own_sessions(mic: str, start: str, end: str) -> set[pd.Timestamp]:
    """Sessions straight from exchange_calendars, independent of MarketFlow's wrappers."""
    return set(
        xcals.get_calendar(mic, start="2024-01-02", end="2024-12-31").sessions_in_range(start, end)
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    settings = make_settings(
        tmp_path_factory.mktemp("exchanges") / "home",
        tickers=",".join(TICKERS),
        simulator_now=CLOCK,
    )
    daily = materialize(settings, select=DAILY, partition_range=DAILY_RANGE)
    intraday = materialize(settings, select=INTRADAY, partition_range=INTRADAY_RANGE)
    return settings, daily, intraday


def test_partitions_are_the_union_and_each_ticker_has_its_own_sessions(built):
    settings, _, _ = built
    keys = (
        build_definitions(settings)
        .resolve_asset_graph()
        .get(dg.AssetKey(["silver", "daily_bars"]))
        .partitions_def.get_partition_keys()
    )
    in_range = {pd.Timestamp(k) for k in keys if DAILY_RANGE[0] <= k <= DAILY_RANGE[1]}
    union = set().union(*(own_sessions(m, *DAILY_RANGE) for m in set(MICS.values())))
    assert in_range == union
    # Tokyo-only, London-only and New York-only holidays: still a partition (someone trades).
    assert {
        pd.Timestamp("2024-05-03"),
        pd.Timestamp("2024-05-06"),
        pd.Timestamp("2024-06-19"),
    } <= in_range

    bars = table(settings, "silver.daily_bars")
    for ticker, mic in MICS.items():
        dates = set(pd.to_datetime(bars.loc[bars["ticker"] == ticker, "session_date"]))
        assert dates == own_sessions(mic, *DAILY_RANGE), ticker
    by_ticker = bars.groupby("ticker")["session_date"].apply(lambda d: set(pd.to_datetime(d)))
    assert pd.Timestamp("2024-06-19") not in by_ticker["AAPL"]  # Juneteenth
    assert pd.Timestamp("2024-06-19") in by_ticker["AZN.L"]
    assert pd.Timestamp("2024-05-06") not in by_ticker["AZN.L"]  # bank holiday
    assert pd.Timestamp("2024-05-06") in by_ticker["MSFT"]
    assert pd.Timestamp("2024-05-03") not in by_ticker["6758.T"]  # Constitution Day


def test_no_false_missing_bar_or_non_session_findings(built):
    settings, daily, intraday = built
    assert table(settings, "silver.rejected_bars").empty
    checks = evaluations(daily)
    for name in ("completeness", "row_reconciliation", "ohlc_consistency"):
        evaluation = checks[("silver/daily_bars", name)]
        assert evaluation.passed, (name, evaluation.metadata)
    assert evaluations(intraday)[("silver/intraday_bars_1m", "row_reconciliation")].passed


def test_symbols_know_exchange_currency_and_price_unit(built):
    settings, _, _ = built
    symbols = table(settings, "silver.symbols").set_index("ticker")
    assert symbols.loc["AZN.L", ["mic", "currency", "price_unit"]].tolist() == [
        "XLON",
        "GBP",
        "GBp",
    ]
    assert symbols.loc["6758.T", ["mic", "currency", "price_unit"]].tolist() == [
        "XTKS",
        "JPY",
        "JPY",
    ]
    assert symbols.loc["AAPL", ["mic", "currency", "price_unit"]].tolist() == ["XNYS", "USD", "USD"]


def test_minutes_follow_each_exchanges_hours_in_utc(built):
    settings, _, intraday = built
    spans = query(
        settings,
        """
        SELECT ticker, session_date, count(*) AS minutes,
            strftime(min(ts) AT TIME ZONE 'UTC', '%H:%M') AS first,
            strftime(max(ts) AT TIME ZONE 'UTC', '%H:%M') AS last,
            count(*) FILTER (WHERE strftime(ts AT TIME ZONE 'UTC', '%H:%M') BETWEEN '02:30' AND '03:29')
                AS in_tokyo_lunch
        FROM silver.intraday_bars_1m GROUP BY ALL ORDER BY ALL
        """,
    )
    got = {
        (r.ticker, str(r.session_date.date())): (r.minutes, r.first, r.last)
        for r in spans.itertuples()
    }
    # New York 09:30-16:00 EDT, London 08:00-16:30 BST, Tokyo 09:00-11:30 + 12:30-15:00 JST.
    assert got[("AAPL", "2024-06-18")] == (390, "13:30", "19:59")
    assert ("AAPL", "2024-06-19") not in got  # Juneteenth: no New York session
    assert got[("AZN.L", "2024-06-19")] == (510, "07:00", "15:29")
    assert got[("6758.T", "2024-06-19")] == (300, "00:00", "05:59")
    tokyo = spans[spans["ticker"] == "6758.T"]
    assert (tokyo["in_tokyo_lunch"] == 0).all()
    assert {
        (t, str(d.date())) for t, d in zip(spans["ticker"], spans["session_date"], strict=True)
    } == {(t, str(s.date())) for t, mic in MICS.items() for s in own_sessions(mic, *INTRADAY_RANGE)}

    summary = table(settings, "gold.intraday_daily_summary")
    assert (summary["minutes_missing"] == 0).all()
    expected = summary.set_index("ticker").groupby(level=0)["minutes_expected"].first()
    assert expected.to_dict() == {"AAPL": 390, "MSFT": 390, "AZN.L": 510, "6758.T": 300}
    assert evaluations(intraday)[("silver/intraday_bars_1m", "intraday_vs_daily")].passed

    hours = table(settings, "silver.session_hours")
    tokyo_hours = hours[(hours["ticker"] == "6758.T")].iloc[0]
    assert tokyo_hours["break_start_utc"] == pd.Timestamp(
        f"{tokyo_hours['session_date'].date()} 02:30", tz="UTC"
    )

    # Hourly bars start at each exchange's own open; Tokyo's lunch leaves hour 2 and 3 partial.
    hourly = table(settings, "gold.hourly_bars", "ticker, session_date, hour_of_session")
    day = hourly[hourly["session_date"] == pd.Timestamp("2024-06-19")]
    london = day[day["ticker"] == "AZN.L"]
    assert london["hour_start"].dt.strftime("%H:%M").tolist()[:2] == ["07:00", "08:00"]
    assert london["minutes"].tolist() == [60] * 8 + [30]
    tokyo_day = day[day["ticker"] == "6758.T"]
    assert tokyo_day["minutes"].tolist() == [60, 60, 30, 30, 60, 60]
    assert tokyo_day["minutes"].sum() == 300


def test_sector_marts_never_mix_exchanges(built):
    settings, _, _ = built
    sectors = table(settings, "gold.sector_daily", "session_date, sector, mic")
    assert not sectors.duplicated(["sector", "mic", "session_date"]).any()
    tech = sectors[
        (sectors["sector"] == "Technology")
        & (sectors["session_date"] == pd.Timestamp("2024-06-18"))
    ]
    # AAPL and MSFT in New York (USD), Sony in Tokyo (JPY): two rows, never one of three.
    assert sorted(zip(tech["mic"], tech["currency"], tech["tickers"], strict=True)) == [
        ("XNYS", "USD", 2),
        ("XTKS", "JPY", 1),
    ]
    # Juneteenth: Tokyo's technology row alone; no New York row for a session it did not trade.
    juneteenth = sectors[sectors["session_date"] == pd.Timestamp("2024-06-19")]
    assert "XNYS" not in set(juneteenth["mic"])
    # London's amounts are in pounds: AZN.L's dollar volume is quoted in pence.
    features = table(settings, "gold.daily_features")
    azn = features[
        (features["ticker"] == "AZN.L") & (features["session_date"] == pd.Timestamp("2024-06-18"))
    ]
    health = sectors[
        (sectors["mic"] == "XLON") & (sectors["session_date"] == pd.Timestamp("2024-06-18"))
    ]
    assert health["currency"].tolist() == ["GBP"]
    assert health["total_dollar_volume"].iloc[0] == pytest.approx(
        azn["dollar_volume"].iloc[0] / 100
    )


def test_an_unknown_exchange_suffix_fails_naming_the_ticker(tmp_path):
    settings = make_settings(tmp_path / "home", tickers="AAPL,FOO.XX", simulator_now=CLOCK)
    build_definitions(settings)  # the code location still loads, so the UI can show the failure
    result = materialize(
        settings, select=["raw/daily_bars"], partition="2024-06-18", raise_on_error=False
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "FOO.XX: unknown exchange suffix .XX" in str(failure.step_failure_data.error)
