"""Silver repairs known provider errors with provenance, or quarantines them; one validation
writes silver.daily_bars, silver.rejected_bars and silver.bar_repairs together."""

from __future__ import annotations

import dataclasses

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from marketflow_assets.definitions import build_definitions
from marketflow_assets.transforms.repairs import RepairSwitches
from marketflow_assets.transforms.repairs.bars import repair_bars
from marketflow_assets.transforms.repairs.dividends import repair_dividends
from marketflow_tests.helpers import materializations, materialize, table

DAYS = pd.bdate_range("2024-05-01", periods=12)


def bars(close, volume=None, ticker="AZN.L", **columns) -> pd.DataFrame:
    close = np.asarray(close, dtype=float)
    frame = pd.DataFrame(
        {
            "ticker": ticker,
            "session_date": DAYS[: len(close)],
            "open": close,
            "high": close * 1.01,
            "low": close * 0.99,
            "close": close,
            "adj_close": close,
            "volume": volume if volume is not None else np.full(len(close), 1000.0),
            "source": "csv",
            "fetch_id": "f1",
            "fetched_at": pd.Timestamp("2024-06-07 22:00", tz="UTC"),
            "raw_object": "obj",
        }
    )
    return frame.assign(**columns)


NO_ACTIONS = pd.DataFrame(columns=["ticker", "ex_date", "split_ratio", "dividend_factor"])


def test_a_100x_block_is_rescaled_to_the_latest_traded_level_with_provenance():
    close = [14.55] * 4 + [0.1455] * 5 + [14.55] * 3
    repaired, log, quarantined = repair_bars(bars(close), NO_ACTIONS, RepairSwitches())
    np.testing.assert_allclose(repaired["close"], 14.55)
    assert repaired["repair_reason"].eq("unit_100x").sum() == 5
    assert quarantined.empty
    assert len(log) == 5 and set(log["kind"]) == {"unit_100x"}
    np.testing.assert_allclose(log["original_close"], 0.1455)
    np.testing.assert_allclose(log["factor"], 0.01)
    # volume is a share count: a currency unit error does not change it
    np.testing.assert_array_equal(repaired["volume"], 1000.0)


def test_unapplied_split_rescales_prices_and_volume_only_near_the_split():
    # 5:1 split on day 7; days 0-3 still in pre-split terms (price x5, volume /5)
    close = [500.0, 505, 498, 502, 100.5, 101, 99.8, 100.2, 101, 100, 99.5, 100]
    volume = np.array([200.0] * 4 + [1000.0] * 8)
    actions = pd.DataFrame(
        {"ticker": ["AZN.L"], "ex_date": [DAYS[7]], "split_ratio": [5.0], "dividend_factor": [1.0]}
    )
    repaired, log, _ = repair_bars(bars(close, volume), actions, RepairSwitches())
    np.testing.assert_allclose(repaired["close"][:4], np.array(close[:4]) / 5)
    np.testing.assert_allclose(repaired["volume"][:4], 1000.0)
    assert set(log["kind"]) == {"split_unapplied"}
    # the same jump far from any split is no split: left alone (a real move or a quarantine)
    far = actions.assign(ex_date=[pd.Timestamp("2023-01-02")])
    untouched, log, _ = repair_bars(bars(close, volume), far, RepairSwitches())
    assert log.empty and untouched["repair_reason"].isna().all()


def test_open_outside_the_range_widens_it_and_switching_repairs_off_gives_raw_behaviour():
    frame = bars([209.0] * 12)
    frame.loc[3, "open"] = frame.loc[3, "low"] * 0.995  # SPY 2015-03-05 style auction print
    repaired, log, _ = repair_bars(frame, NO_ACTIONS, RepairSwitches())
    assert repaired.loc[3, "low"] == frame.loc[3, "open"]
    assert log["kind"].tolist() == ["range_widened"]
    raw, log, _ = repair_bars(frame, NO_ACTIONS, RepairSwitches.from_disabled("range_widened"))
    assert log.empty and raw.loc[3, "low"] == frame.loc[3, "low"]
    close = [14.55] * 4 + [0.1455] * 5 + [14.55] * 3
    raw, log, _ = repair_bars(bars(close), NO_ACTIONS, RepairSwitches.from_disabled("unit_100x"))
    assert log.empty and raw["close"].min() == pytest.approx(0.1455)


def test_an_unexplained_spike_is_quarantined_not_guessed():
    close = [10.0] * 5 + [370.0] + [10.0] * 6  # 37x out and back: no unit, no split
    repaired, log, quarantined = repair_bars(bars(close), NO_ACTIONS, RepairSwitches())
    assert len(repaired) == 11 and log.empty
    assert quarantined["reason"].tolist() == ["unexplained_price_spike"]
    assert "37x" in quarantined["detail"].iloc[0]


def test_unknown_repair_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown repair kind"):
        RepairSwitches.from_disabled("unit_100x,typo")


def actions(rows) -> pd.DataFrame:
    frame = pd.DataFrame(
        rows, columns=["ticker", "ex_date", "dividend", "yield_", "drop", "provider_yield"]
    )
    return frame.assign(ex_date=pd.to_datetime(frame["ex_date"]), split_ratio=1.0)


def test_dividend_100x_too_large_and_a_phantom_copy_are_corrected_with_the_original_kept():
    out = repair_dividends(
        actions(
            [
                ("ELCO.L", "2022-06-01", 0.4, 0.449, 0.0, 0.00449),  # 45% yield, no price drop
                ("KEN.TA", "2022-01-18", 3.5, 0.0209, -0.0006, 0.0209),  # phantom, same amount
                ("KEN.TA", "2022-01-19", 3.5, 0.0209, 0.069, 0.0209),
                ("HSBK.IL", "2024-05-14", 2.26, 0.119, 0.097, 0.119),  # large and real: drop
            ]
        ),
        RepairSwitches(),
    ).set_index(["ticker", "ex_date"])
    elco = out.loc[("ELCO.L", pd.Timestamp("2022-06-01"))]
    assert elco["dividend"] == pytest.approx(0.004)
    assert elco["original_dividend"] == 0.4 and elco["repair_reason"] == "dividend_unit"
    phantom = out.loc[("KEN.TA", pd.Timestamp("2022-01-18"))]
    assert phantom["dividend"] == 0 and phantom["repair_reason"] == "dividend_duplicate"
    assert out.loc[("KEN.TA", pd.Timestamp("2022-01-19")), "dividend"] == 3.5
    assert pd.isna(out.loc[("HSBK.IL", pd.Timestamp("2024-05-14")), "repair_reason"])


def test_tiny_real_dividends_are_left_alone():
    out = repair_dividends(
        actions(
            [
                ("CALM", "2023-08-04", 0.755, 0.0162, 0.0176, 0.0162),
                ("CALM", "2023-10-31", 0.006, 0.00013, -0.0022, 0.00013),
                ("CALM", "2024-01-30", 0.116, 0.0021, 0.0045, 0.0021),
            ]
        ),
        RepairSwitches(),
    )
    assert out["repair_reason"].isna().all()
    np.testing.assert_allclose(out["dividend"], [0.755, 0.006, 0.116])


def test_a_dividend_dated_a_session_early_moves_to_its_drop_and_one_without_prices_is_not_applied():
    rows = actions(
        [
            # SCR.TO: 15% of the close, no drop on its date, 4.5% at the next open: real, early
            ("SCR.TO", "2023-03-14", 0.441, 0.153, 0.0103, 0.153),
            # ABDP.L: 12% with a 1.4% move next day is a 100x dividend, not an early one
            ("ABDP.L", "2022-05-05", 1.76, 0.1226, 0.0, 0.1226),
            ("SSNLF", "2009-12-29", 0.0977, 0.00014, np.nan, np.nan),  # on a row without prices
        ]
    ).assign(
        next_drop=[0.045, 0.0136, np.nan],
        next_yield=[0.153, 0.1226, np.nan],
        next_date=pd.to_datetime(["2023-03-15", "2022-05-06", None]),
        priced=[True, True, False],
    )
    out = repair_dividends(rows, RepairSwitches()).set_index("ticker")
    assert out.loc["SCR.TO", "repair_reason"] == "dividend_date"
    assert out.loc["SCR.TO", "ex_date"] == pd.Timestamp("2023-03-15")
    assert out.loc["SCR.TO", "dividend"] == 0.441
    assert out.loc["ABDP.L", "repair_reason"] == "dividend_unit"
    assert out.loc["ABDP.L", "dividend"] == pytest.approx(0.0176)
    assert out.loc["SSNLF", "repair_reason"] == "dividend_unpriced"
    assert out.loc["SSNLF", "dividend"] == 0 and out.loc["SSNLF", "original_dividend"] == 0.0977

    raw = repair_dividends(
        rows, RepairSwitches(dividend_date=False, dividend_unpriced=False, dividend_unit=False)
    ).set_index("ticker")
    assert raw["repair_reason"].isna().all()
    assert raw.loc["SCR.TO", "ex_date"] == pd.Timestamp("2023-03-14")
    assert raw.loc["SSNLF", "dividend"] == 0.0977


# -- through Dagster: csv source -> raw -> bronze -> silver ------------------------------------
CSV = """Date,Open,High,Low,Close,Adj Close,Volume,Dividends,Stock Splits
2024-05-28,100.0,101.0,99.0,100.5,100.5,1000,0,0
2024-05-29,100.5,101.5,99.5,101.0,101.0,1000,0,0
2024-05-30,99.0,102.0,99.6,101.5,101.5,1000,0,0
2024-05-31,1.015,1.025,1.005,1.02,1.02,1000,0,0
2024-06-03,102.0,103.0,101.0,102.5,102.5,1000,0,0
2024-06-04,102.5,103.5,101.5,103.0,103.0,1000,0,0
"""
DAILY = ["raw/daily_bars", "bronze/daily_bars", "silver/corporate_actions", "silver/daily_bars"]


@pytest.fixture
def csv_settings(settings, tmp_path):
    directory = tmp_path / "csv"
    directory.mkdir()
    (directory / "SPY.csv").write_text(CSV)
    return dataclasses.replace(settings, source="csv", csv_dir=directory, tickers="SPY")


def test_silver_daily_bars_cannot_be_materialized_without_its_rejected_rows(csv_settings):
    """Issue 16's selection trap: daily bars selected with their upstream but without
    rejected_bars used to write silver and fail the blocking reconciliation. Now one validation
    owns both: a selection that splits them is refused, the whole validation reconciles."""
    defs = build_definitions(csv_settings)
    daily = defs.resolve_assets_def(dg.AssetKey(["silver", "daily_bars"]))
    assert dg.AssetKey(["silver", "rejected_bars"]) in daily.keys
    assert not daily.can_subset
    keys = dg.AssetSelection.from_coercible(DAILY).resolve(defs.resolve_asset_graph())
    with pytest.raises(dg.DagsterInvalidSubsetError, match="rejected_bars"):
        defs.resolve_implicit_global_asset_job_def().execute_in_process(
            asset_selection=list(keys),
            tags={
                "dagster/asset_partition_range_start": "2024-05-28",
                "dagster/asset_partition_range_end": "2024-06-04",
            },
        )
    result = materialize(csv_settings, select=DAILY, partition_range=("2024-05-28", "2024-06-04"))
    assert result.success
    assert materializations(result, ["silver", "rejected_bars"])
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["row_reconciliation"].passed


def test_csv_bars_are_repaired_in_silver_and_listed_with_warn_checks(csv_settings):
    result = materialize(csv_settings, select=DAILY, partition_range=("2024-05-28", "2024-06-04"))
    silver = table(csv_settings, "silver.daily_bars", "session_date")
    assert len(silver) == 6  # nothing lost: the 100x row and the auction print are repaired
    by_day = silver.set_index(silver["session_date"].dt.strftime("%Y-%m-%d"))
    assert by_day.loc["2024-05-31", "close"] == pytest.approx(102.0)
    assert by_day.loc["2024-05-31", "repair_reason"] == "unit_100x"
    assert by_day.loc["2024-05-30", "low"] == pytest.approx(99.0)
    assert by_day.loc["2024-05-30", "repair_reason"] == "range_widened"
    repairs = table(csv_settings, "silver.bar_repairs", "session_date")
    assert repairs["kind"].tolist() == ["range_widened", "unit_100x"]
    assert repairs["original_close"].tolist() == [101.5, 1.02]
    assert table(csv_settings, "silver.rejected_bars").empty
    bronze = table(csv_settings, "bronze.daily_bars", "ts")
    assert bronze["close"].min() == pytest.approx(1.02)  # originals stay in bronze
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    for kind in ("unit_100x", "range_widened"):
        warned = evaluations[f"repairs_{kind}"]
        assert not warned.passed and warned.severity == dg.AssetCheckSeverity.WARN
    assert evaluations["repairs_split_unapplied"].passed


def test_switching_a_repair_off_serves_raw_behaviour(csv_settings):
    materialize(
        csv_settings,
        select=DAILY,
        partition_range=("2024-05-28", "2024-06-04"),
        run_config={"ops": {"silver_daily_validation": {"config": {"unit_100x": False}}}},
    )
    silver = table(csv_settings, "silver.daily_bars", "session_date")
    assert silver["close"].min() == pytest.approx(1.02)
    assert set(table(csv_settings, "silver.bar_repairs")["kind"]) == {"range_widened"}
