"""yfinance's own price-repair fixtures (real Yahoo responses and the maintainers' repaired
versions, `../shared/real_data/yfinance_tests_data`) through the csv source into silver.

The small pairs, one of each error kind, plus a control; `make repair-report` runs them all."""

from __future__ import annotations

import pytest

from marketflow_assets.repair_report.fixtures import default_fixtures_dir, run_all, run_file, table

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
]


@pytest.mark.parametrize("name", PAIRS)
def test_pair_comes_out_equal_to_the_maintainers_repair(name):
    result = run_file(FIXTURES / name)
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
