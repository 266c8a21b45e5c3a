from __future__ import annotations

import datetime as dt

import pytest

from marketflow_assets.settings import ConfigError, Settings
from marketflow_assets.tickers import (
    InvalidTickerError,
    default_universe,
    load_universe,
    validate_ticker,
)


def test_defaults_without_environment(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the default home, ./.marketflow, holds no settings file
    s = Settings.from_env({})
    assert s.source == "yfinance"
    assert s.start_date == dt.date(2010, 1, 4)
    assert s.warehouse.name == "warehouse.duckdb" and s.lake_root.name == "lake"
    assert s.s3_bucket is None and s.s3_prefix == "marketflow"


def test_environment_is_read_and_validated(tmp_path):
    s = Settings.from_env(
        {
            "MARKETFLOW_HOME": str(tmp_path),
            "MARKETFLOW_SOURCE": "simulator",
            "MARKETFLOW_SIMULATOR_NOW": "2024-06-07T16:30:00-04:00",
            "MARKETFLOW_SIMULATOR_SEED": "7",
            "MARKETFLOW_S3_BUCKET": "lake",
            "MARKETFLOW_S3_PREFIX": "/team/marketflow/",
        }
    )
    assert s.home == tmp_path and s.simulator_seed == 7 and s.s3_prefix == "team/marketflow"
    assert s.simulator_now == dt.datetime(2024, 6, 7, 20, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"MARKETFLOW_SOURCE": "bloomberg"}, "MARKETFLOW_SOURCE"),
        ({"MARKETFLOW_SOURCE": "csv"}, "MARKETFLOW_CSV_DIR"),
        ({"MARKETFLOW_START_DATE": "2024-13-01"}, "MARKETFLOW_START_DATE"),
        ({"MARKETFLOW_SIMULATOR_SEED": "x"}, "MARKETFLOW_SIMULATOR_SEED"),
        ({"MARKETFLOW_SIMULATOR_NOW": "yesterday"}, "MARKETFLOW_SIMULATOR_NOW"),
        ({"MARKETFLOW_RETRY_BASE_SECONDS": "-1"}, "MARKETFLOW_RETRY_BASE_SECONDS"),
    ],
)
def test_bad_settings_name_the_variable(env, named):
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(env)


@pytest.mark.parametrize(
    "symbol", ["AAPL", "brk-b", "^GSPC", "EURUSD=X", "0700.HK", "GC=F", "BTC-USD"]
)
def test_yahoo_symbols_are_accepted(symbol):
    assert validate_ticker(symbol) == symbol.upper()


@pytest.mark.parametrize(
    "symbol", ["", "A B", "../etc", "AAPL;DROP", "A'B", "A/B", "-A", "A--B", "X" * 21]
)
def test_unsafe_symbols_are_rejected_by_name(symbol):
    with pytest.raises(InvalidTickerError, match="invalid ticker"):
        validate_ticker(symbol, origin="test")


def test_universe_sources(tmp_path):
    universe = default_universe()
    assert 30 <= len(universe) <= 40 and "^GSPC" in universe and "BRK-B" in universe
    assert load_universe(None) == universe
    assert load_universe("msft, aapl,MSFT") == ["MSFT", "AAPL"]
    path = tmp_path / "u.txt"
    path.write_text("# mine\nKO\nPEP  # cola\n\n")
    assert load_universe(f"@{path}") == ["KO", "PEP"]
    with pytest.raises(InvalidTickerError, match="does not exist"):
        load_universe(f"@{tmp_path / 'missing.txt'}")
    path.write_text("KO\nbad ticker\n")
    with pytest.raises(InvalidTickerError, match=str(path)):
        load_universe(f"@{path}")
