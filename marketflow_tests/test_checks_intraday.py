"""Checks of the one-minute path: minute row reconciliation, intraday vs daily bars."""

from __future__ import annotations

import dagster as dg
import pytest

from marketflow_tests.checks_support import (
    DAILY,
    clone,
    evaluations,
    execute,
    metadata,
    run_checks,
    sessions_of,
    tickers_of,
)
from marketflow_tests.helpers import materialize

INTRADAY = [
    "raw/intraday_bars_1m",
    "bronze/intraday_bars_1m",
    "silver/intraday_bars_1m",
    "silver/rejected_bars",
]
SESSIONS = ("2024-06-05", "2024-06-06")
SILVER_MINUTES = "silver/intraday_bars_1m"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from marketflow_tests.helpers import make_settings

    settings = make_settings(tmp_path_factory.mktemp("intraday") / "home", tickers="AAPL,KO")
    result = materialize(settings, select=[*DAILY, *INTRADAY], partition_range=SESSIONS)
    return settings, evaluations(result)


def test_clean_sessions_pass_both_checks(built):
    _, checks = built
    reconciliation = checks[(SILVER_MINUTES, "row_reconciliation")]
    versus = checks[(SILVER_MINUTES, "intraday_vs_daily")]
    assert reconciliation.passed and versus.passed
    assert metadata(versus)["checked_rows"] == 4  # 2 tickers x 2 complete sessions


def test_minutes_that_disagree_with_the_day_are_named(built, tmp_path):
    settings, _ = built
    broken = clone(settings, tmp_path / "home")
    execute(
        broken,
        "UPDATE silver.intraday_bars_1m SET high = high * 1.5 "
        "WHERE ticker = 'KO' AND session_date = '2024-06-06' AND ts = "
        "(SELECT min(ts) FROM silver.intraday_bars_1m WHERE ticker = 'KO' AND session_date = '2024-06-06')",
    )
    result = run_checks(broken, dg_asset(SILVER_MINUTES), partition_range=SESSIONS)
    versus = evaluations(result)[(SILVER_MINUTES, "intraday_vs_daily")]
    assert not versus.passed and versus.severity.value == "WARN"
    assert tickers_of(versus) == {"KO"} and sessions_of(versus) == {"2024-06-06"}


def test_a_minute_lost_between_layers_breaks_the_reconciliation(built, tmp_path):
    settings, _ = built
    broken = clone(settings, tmp_path / "home")
    execute(
        broken,
        "DELETE FROM silver.intraday_bars_1m WHERE ticker = 'AAPL' AND ts = (SELECT max(ts) FROM silver.intraday_bars_1m)",
    )
    result = run_checks(broken, dg_asset(SILVER_MINUTES), partition_range=SESSIONS)
    reconciliation = evaluations(result)[(SILVER_MINUTES, "row_reconciliation")]
    assert not reconciliation.passed
    assert tickers_of(reconciliation) == {"AAPL"} and sessions_of(reconciliation) == {"2024-06-06"}


def dg_asset(path: str) -> dg.AssetKey:
    return dg.AssetKey(path.split("/"))
