"""`make demo`: progress lines and a summary instead of the event stream, the full log in a file,
and the configuration hand-over to `make dev` (the definitions its code path loads)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import dagster as dg
import pytest

from marketflow_assets.demo_progress import LOGGER_KEY, RUN_CONFIG, Progress, demo_logger
from marketflow_tests.helpers import FRIDAY_EVENING

REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))


def test_progress_shows_steps_and_verdicts_and_the_log_file_gets_everything(tmp_path):
    @dg.asset(partitions_def=dg.StaticPartitionsDefinition(["a", "b"]))
    def prices(context) -> None:
        context.log.info("fetching prices")

    @dg.asset_check(asset=prices)
    def positive() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=True)

    @dg.asset_check(asset=prices)
    def complete() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN)

    @dg.asset(deps=[prices])
    def broken() -> None:
        raise ValueError("warehouse is locked")

    terminal, log_file = io.StringIO(), tmp_path / "logs" / "demo.log"
    progress = Progress(terminal)
    defs = dg.Definitions(
        assets=[prices, broken],
        asset_checks=[positive, complete],
        loggers={LOGGER_KEY: demo_logger(log_file, progress)},
    )
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        run_config=RUN_CONFIG,
        tags={"dagster/asset_partition_range_start": "a", "dagster/asset_partition_range_end": "b"},
        asset_selection=[prices.key],
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    failed = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        run_config=RUN_CONFIG,
        asset_selection=[broken.key],
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not failed.success

    shown = terminal.getvalue()
    assert re.search(r"prices \(2 sessions\)", shown), shown
    assert "1 check passed" in shown and "warn prices:complete" in shown, shown
    # a step that only runs checks is named by what it checks, not by its op name
    assert re.search(r"\] +[\d.]+s  checks on prices; 1 check passed", shown), shown
    assert "broken  FAILED:" in shown and "warehouse is locked" in shown, shown
    assert "DEBUG" not in shown and "STEP_START" not in shown
    assert progress.failures and "warehouse is locked" in progress.failures[0]
    assert progress.check_verdicts == {
        ("prices:positive", "passed"): 1,
        ("prices:complete", "warn"): 1,
    }
    logged = log_file.read_text()
    for event in ("RUN_START", "STEP_START", "ASSET_MATERIALIZATION", "STEP_FAILURE"):
        assert event in logged, event
    assert "fetching prices" in logged


@pytest.mark.slow
def test_make_demo_hands_its_source_to_make_dev(tmp_path):
    """The demo (daily stage over a few sessions, two tickers) prints progress and a summary,
    names its log, writes the settings file; then `make dev`'s code path (the module in
    workspace.yaml), given nothing but MARKETFLOW_HOME, loads definitions on the demo's source
    and materializes a session offline (the default source, yfinance, cannot reach Yahoo here)."""
    home = tmp_path / "home"
    base = {k: v for k, v in os.environ.items() if not k.startswith("MARKETFLOW_")}
    base |= {"MARKETFLOW_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    (home / "dagster").mkdir(parents=True)
    (home / "dagster" / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    demo_env = base | {
        "MARKETFLOW_TICKERS": "AAPL,^GSPC",
        "MARKETFLOW_SIMULATOR_NOW": FRIDAY_EVENING.isoformat(),
        "MARKETFLOW_SIMULATOR_SEED": "7",
    }
    demo = subprocess.run(
        [
            sys.executable,
            "-m",
            "marketflow_assets.demo",
            *("--sessions", "3"),
            "--intraday-sessions=0",
        ],
        cwd=REPO,
        env=demo_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = demo.stdout
    assert demo.returncode == 0, out[-3000:] + demo.stderr[-3000:]
    assert "[1/1] daily history" in out and "raw/daily_bars (3 sessions)" in out, out
    assert "Demo succeeded" in out and "Rows per table:" in out and "Checks:" in out, out
    assert (
        " - DEBUG - " not in out and "STEP_START" not in out and "Completed successfully" not in out
    ), out
    log_file = Path(re.search(r"Full log: (\S+)", out).group(1))
    assert "STEP_SUCCESS" in log_file.read_text()

    written = tomllib.loads((home / "settings.toml").read_text())
    assert written["source"] == "simulator" and written["simulator_seed"] == 7
    assert written["start_date"] == "2024-06-05"  # the demo's first session
    assert written["tickers"] == "AAPL,^GSPC"

    probe = (
        "from marketflow_assets.definitions import defs\n"
        "m = defs.resources['market_data']\n"
        "job = defs.resolve_implicit_global_asset_job_def()\n"
        "print(m.source, m.simulator_seed, m.simulator_now, m.simulator_faults,"
        " job.partitions_def.get_first_partition_key(), sep='|')\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, env=base, capture_output=True, text=True
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    source, seed, now, faults, first = loaded.stdout.strip().splitlines()[-1].split("|")
    assert (source, seed, first) == ("simulator", "7", "2024-06-05")
    assert now.startswith("2024-06-07T22:00") and faults == "duplicates=0.002,bad_ticks=0.002"

    materialize = subprocess.run(
        [
            DAGSTER,
            "asset",
            "materialize",
            "-m",
            "marketflow_assets.definitions",
            *("--select", "raw/daily_bars", "--partition", "2024-06-07"),
        ],
        cwd=REPO,
        env=base,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert materialize.returncode == 0, materialize.stderr[-3000:]
