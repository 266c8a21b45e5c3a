"""gold/daily_features: TA-Lib over each ticker's full history, however the partitions are built."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
import talib

from marketflow_assets.assets import bronze as bronze_assets
from marketflow_assets.assets import gold as gold_assets
from marketflow_assets.calendar import xnys
from marketflow_assets.contracts.gold import DAILY_FEATURES
from marketflow_assets.definitions import build_definitions
from marketflow_assets.sources.simulator import SimulatorSource
from marketflow_assets.transforms.indicators import (
    LOOKBACK_SESSIONS,
    PANEL_COLUMNS,
    daily_features,
    ticker_bounds,
)
from marketflow_tests.helpers import make_settings, materialize, output_metadata, query, table

DAILY = ["raw/daily_bars", "bronze/daily_bars", "silver/corporate_actions", "silver/daily_bars"]
GOLD = "gold/daily_features"
# MSFT splits 2:1 on 2018-11-26 and pays dividends; KO pays dividends; TSLA has no action here.
TICKERS = "MSFT,KO,TSLA"
FULL = ("2017-01-03", "2020-09-30")  # 944 sessions: more than the lookback
NEXT = "2020-10-01"
COLUMNS = DAILY_FEATURES.column_names
VALUES = COLUMNS[2:]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Raw -> gold over FULL in one run (gold then equals TA-Lib over the whole history)."""
    settings = make_settings(tmp_path_factory.mktemp("gold") / "home", tickers=TICKERS)
    assert materialize(settings, select=[*DAILY, GOLD], partition_range=FULL).success
    return settings


def copy_of(settings, tmp_path):
    """A private copy of the module's warehouse and lake, for tests that change them."""
    shutil.copytree(settings.home, tmp_path / "home")
    return dataclasses.replace(settings, home=tmp_path / "home")


def talib_reference(bars: pd.DataFrame) -> pd.DataFrame:
    """The documented definitions, computed directly over one ticker's full silver history."""
    h, lo, c = (bars[f"adj_{x}"].to_numpy() for x in ("high", "low", "close"))
    close = bars["adj_close"]
    log_return = np.log(close / close.shift())
    macd, signal, hist = talib.MACD(c, 12, 26, 9)
    upper, middle, lower = talib.BBANDS(c, 20, 2.0, 2.0, talib.MA_Type.SMA)
    return pd.DataFrame(
        {
            **{name: bars[name].to_numpy() for name in COLUMNS[:7]},
            "return_1d": (close / close.shift() - 1).to_numpy(),
            "log_return_1d": log_return.to_numpy(),
            "sma_20": talib.SMA(c, 20),
            "sma_50": talib.SMA(c, 50),
            "sma_200": talib.SMA(c, 200),
            "ema_12": talib.EMA(c, 12),
            "ema_26": talib.EMA(c, 26),
            "macd": macd,
            "macd_signal": signal,
            "macd_hist": hist,
            "rsi_14": talib.RSI(c, 14),
            "bb_upper_20": upper,
            "bb_middle_20": middle,
            "bb_lower_20": lower,
            "atr_14": talib.ATR(h, lo, c, 14),
            "volatility_20d": (log_return.rolling(20).std() * np.sqrt(252)).to_numpy(),
            "dollar_volume": (bars["close"] * bars["volume"]).to_numpy(),
            "high_52w": talib.MAX(h, 252),
            "low_52w": talib.MIN(lo, 252),
        }
    )


def reference(settings, tickers=None) -> pd.DataFrame:
    silver = table(settings, "silver.daily_bars", "ticker, session_date")
    if tickers is not None:
        silver = silver[silver["ticker"].isin(tickers)]
    return pd.concat(
        [talib_reference(bars) for _, bars in silver.groupby("ticker", sort=True)],
        ignore_index=True,
    )


def assert_features_equal(got: pd.DataFrame, expected: pd.DataFrame, rtol: float = 1e-9):
    """Same rows, NULL in the same places, values within `rtol` (tiny atol for values near 0)."""
    assert list(got.columns) == COLUMNS
    got, expected = got.reset_index(drop=True), expected.reset_index(drop=True)
    pd.testing.assert_frame_equal(got[COLUMNS[:2]], expected[COLUMNS[:2]], check_dtype=False)
    for name in VALUES:
        g, e = got[name].to_numpy(np.float64), expected[name].to_numpy(np.float64)
        np.testing.assert_array_equal(np.isnan(g), np.isnan(e), err_msg=f"NULLs of {name}")
        np.testing.assert_allclose(g, e, rtol=rtol, atol=1e-12, err_msg=name)


def gold(settings, tickers=None) -> pd.DataFrame:
    frame = table(settings, "gold.daily_features", "ticker, session_date")
    if tickers is not None:
        frame = frame[frame["ticker"].isin(tickers)].reset_index(drop=True)
    return frame


def test_features_equal_talib_over_the_full_adjusted_history(built):
    silver = table(built, "silver.daily_bars")
    assert (silver.query("ticker == 'MSFT'")["split_ratio"] == 2).sum() == 1
    assert (silver.query("ticker == 'KO'")["dividend"] > 0).sum() >= 10
    features = gold(built)
    assert_features_equal(features, reference(built))
    # Warm-up rows are NULL like TA-Lib's NaN: 251 per ticker for the 52-week range, 33 for MACD.
    assert features.groupby("ticker")["high_52w"].apply(lambda s: s.isna().sum()).eq(251).all()
    assert features.groupby("ticker")["macd"].apply(lambda s: s.isna().sum()).eq(33).all()
    DAILY_FEATURES.pandera_schema().validate(features)


def test_next_session_after_a_full_build_equals_a_full_rebuild(built, tmp_path):
    settings = copy_of(built, tmp_path)
    materialize(settings, select=DAILY, partition=NEXT)
    result = materialize(settings, select=[GOLD], partition=NEXT)
    # Bounded read: the lookback, not the whole history.
    meta = output_metadata(result, ["gold", "daily_features"])
    assert meta["silver_rows_read"] == 3 * (LOOKBACK_SESSIONS + 1)
    assert meta["dagster/row_count"] == 3
    incremental = gold(settings)

    materialize(settings, select=[GOLD], partition_range=(FULL[0], NEXT))
    rebuilt = gold(settings)
    assert_features_equal(incremental, rebuilt, rtol=1e-12)
    assert_features_equal(rebuilt, reference(settings))


def test_partition_run_replaces_only_its_sessions_and_tickers(built, tmp_path):
    settings = copy_of(built, tmp_path)
    before = gold(settings).set_index(["ticker", "session_date"])
    con = duckdb.connect(str(settings.warehouse))
    con.execute(
        "UPDATE silver.daily_bars SET adj_open = 2 * adj_open, adj_high = 2 * adj_high, "
        "adj_low = 2 * adj_low, adj_close = 2 * adj_close"
    )
    con.close()

    materialize(settings, select=[GOLD], partition="2019-06-03")
    materialize(settings, select=[GOLD], partition="2020-03-02", tickers=["KO"])
    after = gold(settings).set_index(["ticker", "session_date"])

    changed = [
        ("MSFT", pd.Timestamp("2019-06-03")),
        ("KO", pd.Timestamp("2019-06-03")),
        ("TSLA", pd.Timestamp("2019-06-03")),
        ("KO", pd.Timestamp("2020-03-02")),
    ]
    untouched = after.index.difference(pd.MultiIndex.from_tuples(changed))
    pd.testing.assert_frame_equal(after.loc[untouched], before.loc[untouched])
    for name in ("adj_close", "sma_200", "ema_26", "atr_14", "bb_lower_20", "high_52w"):
        np.testing.assert_allclose(after.loc[changed, name], 2 * before.loc[changed, name])
    for name in ("return_1d", "rsi_14", "volatility_20d", "dollar_volume"):
        np.testing.assert_allclose(after.loc[changed, name], before.loc[changed, name])


def test_a_ticker_added_later_gets_its_full_history_indicators(built, tmp_path):
    settings = copy_of(built, tmp_path)
    before = gold(settings)
    grown = dataclasses.replace(settings, tickers=TICKERS + ",NVDA")
    nvda_range = ("2019-09-03", FULL[1])  # 273 sessions: all of them inside the next lookback
    materialize(grown, select=[*DAILY, GOLD], partition_range=nvda_range, tickers=["NVDA"])
    pd.testing.assert_frame_equal(gold(grown, ["MSFT", "KO", "TSLA"]), before)
    assert_features_equal(gold(grown, ["NVDA"]), reference(grown, ["NVDA"]))

    materialize(grown, select=[*DAILY, GOLD], partition=NEXT)
    assert_features_equal(gold(grown), reference(grown))
    nvda = gold(grown, ["NVDA"])
    assert len(nvda) == 274 and nvda["high_52w"].notna().sum() == 274 - 251


def test_csv_history_with_a_split_and_a_dividend(settings, tmp_path):
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    sessions = xnys().sessions_in_range(dt.date(2022, 3, 1), dt.date(2023, 6, 30))
    for i, ticker in enumerate(("BRK-B", "^GSPC")):
        yahoo_export(sessions, seed=i).to_csv(csv_dir / f"{ticker}.csv", index=False)
    settings = dataclasses.replace(settings, source="csv", csv_dir=csv_dir, tickers="BRK-B,^GSPC")
    span = (sessions[0].isoformat(), sessions[-1].isoformat())
    assert materialize(settings, select=[*DAILY, GOLD], partition_range=span).success
    silver = table(settings, "silver.daily_bars")
    assert (silver["split_ratio"] == 2).sum() == 2 and (silver["dividend"] > 0).sum() == 2
    assert_features_equal(gold(settings), reference(settings))


def yahoo_export(sessions: list[dt.date], seed: int) -> pd.DataFrame:
    """A Yahoo CSV export as fetched after the last session: a 2:1 split on row 150 (earlier
    prices halved, volumes doubled) and a $0.50 dividend on row 220 (in Adj Close)."""
    rng = np.random.default_rng(seed)
    n = len(sessions)
    traded = np.round(80 * np.exp(np.cumsum(rng.normal(0, 0.015, n))), 2)
    traded[150:] = np.round(traded[150:] / 2, 2)
    as_of = np.where(np.arange(n) < 150, 0.5, 1.0)
    close = traded * as_of
    open_ = close * np.exp(rng.normal(0, 0.004, n))
    high = np.maximum(open_, close) * 1.006
    low = np.minimum(open_, close) * 0.994
    factor = np.where(np.arange(n) < 220, 1 - 0.5 / close[219], 1.0)
    return pd.DataFrame(
        {
            "Date": [s.isoformat() for s in sessions],
            "Open": open_.round(4),
            "High": high.round(4),
            "Low": low.round(4),
            "Close": close.round(4),
            "Adj Close": (close * factor).round(6),
            "Volume": (rng.integers(1_000_000, 5_000_000, n) / as_of).astype(np.int64),
            "Dividends": np.where(np.arange(n) == 220, 0.5, 0.0),
            "Stock Splits": np.where(np.arange(n) == 150, 2.0, 0.0),
        }
    )


def test_load_by_key_gives_the_documented_columns_and_types(built):
    defs = build_definitions(built)
    frame = defs.load_asset_value(dg.AssetKey(["gold", "daily_features"]), partition_key=FULL[1])
    assert list(frame.columns) == COLUMNS
    assert {c.name: str(c.pandas_dtype) for c in DAILY_FEATURES.columns} == {
        name: str(dtype) for name, dtype in frame.dtypes.items()
    }
    assert sorted(frame["ticker"]) == ["KO", "MSFT", "TSLA"]
    assert (frame["session_date"] == pd.Timestamp(FULL[1])).all()
    assert frame[list(VALUES)].notna().all().all()
    types = query(
        built,
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'gold' AND table_name = 'daily_features' ORDER BY ordinal_position",
    )
    assert types.values.tolist() == [[c.name, c.sql_type] for c in DAILY_FEATURES.columns]


def test_kernel_on_a_lookback_window_equals_the_full_history():
    """Ten years of two simulated tickers in one panel: each window of LOOKBACK_SESSIONS before
    a cut gives the full-history values at the cut, and tickers do not leak into each other."""
    sim = SimulatorSource(seed=0)
    frames = []
    for ticker in ("AAPL", "KO"):
        hist = sim.history(ticker, dt.date(2016, 6, 30))
        hist_frame = pd.DataFrame(
            {"ticker": ticker, "session_date": hist.sessions.astype("datetime64[us]")}
            | {f"adj_{x}": getattr(hist, x) for x in ("open", "high", "low", "close")}
            | {"adj_volume": hist.volume * 1.0, "close": hist.close, "volume": hist.volume}
        )
        frames.append(hist_frame.iloc[-2520:])
    panel = pd.concat(frames, ignore_index=True)[list(PANEL_COLUMNS)]
    full = daily_features(panel)
    for ticker, rows in panel.groupby("ticker"):
        bars = rows.reset_index(drop=True)
        assert_features_equal(full[full["ticker"] == ticker], talib_reference(bars), rtol=1e-12)
    for cut in (LOOKBACK_SESSIONS, 1500, 2519):
        window = panel.groupby("ticker").nth(slice(cut - LOOKBACK_SESSIONS, cut + 1))
        at_cut = daily_features(window.reset_index(drop=True)).groupby("ticker").tail(1)
        expected = full.groupby("ticker").nth(cut)
        assert_features_equal(at_cut, expected, rtol=1e-13)


@pytest.mark.parametrize("lengths", [[], [1], [64], [63, 1], [64, 64, 1], [1, 200, 65, 3, 130]])
def test_ticker_bounds_finds_every_ticker_start_wherever_it_falls(lengths):
    tickers = np.repeat(np.array([f"T{i}" for i in range(len(lengths))], dtype=object), lengths)
    assert ticker_bounds(tickers).tolist() == np.concatenate(([0], np.cumsum(lengths))).tolist()


def test_a_range_in_batches_of_one_ticker_gives_the_same_bronze_and_features(
    built, tmp_path, monkeypatch
):
    """Range runs type bronze bars and compute features per batch of whole tickers; batches of
    one ticker each write the same rows as the default (one batch at this size)."""
    settings = copy_of(built, tmp_path)
    before_bronze = table(settings, "bronze.daily_bars", order="ticker, session_date")
    before_gold = gold(settings)
    monkeypatch.setattr(bronze_assets, "TYPED_BATCH_ROWS", 1)
    monkeypatch.setattr(gold_assets, "PANEL_BATCH_ROWS", 1)
    result = materialize(settings, select=["bronze/daily_bars", GOLD], partition_range=FULL)
    meta = output_metadata(result, ["gold", "daily_features"])
    assert meta["tickers"] == 3 and meta["dagster/row_count"] == len(before_gold)
    after_bronze = table(settings, "bronze.daily_bars", order="ticker, session_date")
    pd.testing.assert_frame_equal(after_bronze, before_bronze)
    assert_features_equal(gold(settings), before_gold, rtol=0)
