"""yfinance's own price-repair fixtures (real Yahoo responses and the maintainers' repaired
versions, `../shared/real_data/yfinance_tests_data`) through the csv source into silver.

The small pairs, one of each error kind, plus a control; `make repair-report` runs them all."""

from __future__ import annotations

import pytest

from marketflow_assets.repair_report.fixtures import (
    case_switches,
    default_fixtures_dir,
    run_all,
    run_file,
    table,
)

FIXTURES = default_fixtures_dir()
pytestmark = pytest.mark.skipif(
    not FIXTURES.is_dir(),
    reason=f"yfinance fixtures not found at {FIXTURES} (../shared/real_data is not in this checkout)",
)

PAIRS = [
    "AET-L-1d-100x-error.csv",  # 100x block, the majority of the file, latest rows included
    "SSW-JO-1d-100x-error.csv",  # 100x block, ZAc vs ZAR
    "4063-T-1d-bad-stock-split.csv",  # 5:1 split not applied to 9 rows (Tokyo dates)
    "SPM-MI-1d-bad-stock-split.csv",  # 1:10 reverse split, with a -48% day on top
    "CNE-L-1d-bad-stock-split.csv",  # consolidation + special dividend the same day
    "ALPHA-PA-1d-bad-stock-split.csv",  # 1:10000, one row
    "8TRA-DE-1d-missing-div-adjust.csv",  # Adj Close missing a dividend
    "TEP-PA-1d-bad-div.csv",  # duplicate dividend
    "SCR-TO-1d-bad-div.csv",  # 100x dividends, and a real one dated a session early
    "NVT-L-1d-bad-div.csv",  # dividend 0.01x (its 100x blocks of quotes: a dividend-only case)
]


@pytest.mark.parametrize("name", PAIRS)
def test_pair_comes_out_equal_to_the_maintainers_repair(name):
    result = run_file(FIXTURES / name, case_switches(FIXTURES / name))
    assert result.reconciled, "input rows = silver rows + quarantined rows"
    assert result.different == 0, table([result])
    assert result.equal == result.compared, table([result])


def test_a_control_comes_out_unchanged():
    result = run_file(FIXTURES / "KMR-L-1d-no-bad-divs.csv")
    assert result.passed, table([result])
    assert result.repaired == 0 and result.dividend_repairs == 0
    assert result.quarantined == 0


def test_intraday_files_are_refused_whole_with_the_line_named(tmp_path):
    (tmp_path / "EA-15m-no-bad-divs.csv").symlink_to(FIXTURES / "EA-15m-no-bad-divs.csv")
    (result,) = run_all(tmp_path)
    assert result.refused and "line 2" in result.reasons and "intraday" in result.reasons


def test_a_phantom_dividend_the_fixed_file_keeps_in_adj_close_is_a_repair_with_reason_not_silent():
    result = run_file(FIXTURES / "SAND-1d-bad-div.csv")
    assert result.different == 0, table([result])
    assert result.repaired_beyond and result.equal + result.repaired_beyond == result.compared


def test_all_repairs_on_rescale_the_quote_blocks_a_dividend_only_fix_keeps_with_a_reason():
    result = run_file(FIXTURES / "NVT-L-1d-bad-div.csv")
    assert result.repaired == result.repaired_beyond == 35
    assert result.different == 0, table([result])


def test_weekly_files_are_refused_whole_not_read_as_daily_bars(tmp_path):
    name = "AV-L-1wk-bad-stock-split.csv"
    (tmp_path / name).symlink_to(FIXTURES / name)
    (result,) = run_all(tmp_path)
    assert result.refused and "weekly" in result.reasons
