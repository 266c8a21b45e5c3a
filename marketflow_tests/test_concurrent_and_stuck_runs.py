"""Two writers at once, and stuck runs, against one real DAGSTER_HOME (the repo's dagster.yaml).

- Two real run processes launched at once (the file_drops sensor's request and a manual range
  run over overlapping sessions) end with the tables of running them one after the other, and
  the `duckdb_warehouse` pool is seen serializing their warehouse steps.
- A run whose process died is failed by `dagster-daemon`'s run monitoring (the
  liveness-checking launcher) and its pool slot freed within the bound documented in README and
  dagster.yaml (`STUCK_RUN_BOUND_SECONDS`).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from marketflow_assets.automation.common import range_tags
from marketflow_assets.resources import WAREHOUSE_POOL
from marketflow_tests.checks_support import DAILY_AND_GOLD as DAILY
from marketflow_tests.fault_harness import (
    copy_home,
    differing_tables,
    killed,
    pool_holders,
    run_child,
    start_child,
    tables,
    write_instance_yaml,
)
from marketflow_tests.helpers import make_settings, materialize

# dagster.yaml: poll_interval_seconds 15 (the run is failed on the first poll that sees it dead)
# + free_slots_after_run_end_seconds 5 (slots freed on a later poll): under a minute.
STUCK_RUN_BOUND_SECONDS = 60
TICKERS = "AAPL,KO"
STEP_EVENTS = {
    dg.DagsterEventType.STEP_START,
    dg.DagsterEventType.STEP_SUCCESS,
    dg.DagsterEventType.STEP_FAILURE,
}


def _date(text: str):
    import datetime as dt

    return dt.date.fromisoformat(text)


def pool_steps(settings) -> set[str]:
    """Steps (ops) that run in the warehouse pool; the others do not touch the warehouse (raw
    lands in the lake, Dagster's column-schema checks read the event log)."""
    from marketflow_assets.definitions import build_definitions

    job = build_definitions(settings).resolve_implicit_global_asset_job_def()
    return {node.name for node in job.graph.node_defs if node.pool == WAREHOUSE_POOL}


def pool_step_intervals(
    instance: dg.DagsterInstance, run_id: str, steps: set[str]
) -> list[tuple[float, float]]:
    """[start, end] of each step of the run that runs in the warehouse pool."""
    starts, intervals = {}, []
    for entry in instance.all_logs(run_id, of_type=STEP_EVENTS):
        key = entry.step_key or ""
        if key not in steps:
            continue
        if entry.dagster_event.event_type == dg.DagsterEventType.STEP_START:
            starts[key] = entry.timestamp
        elif key in starts:
            intervals.append((starts.pop(key), entry.timestamp))
    return intervals


@pytest.mark.slow
def test_two_runs_at_once_equal_running_them_one_after_the_other(tmp_path):
    from marketflow_tests.automation_support import tick_sensor
    from marketflow_tests.test_automation_file_drops import yahoo_csv

    seed = make_settings(tmp_path / "seed" / "home", tickers=TICKERS)
    seed_dagster = tmp_path / "seed" / "dagster"
    write_instance_yaml(seed_dagster)
    (seed.home / "landing").mkdir(parents=True)
    (seed.home / "landing" / "MSFT.csv").write_text(yahoo_csv(days=["2024-06-05", "2024-06-06"]))
    with dg.DagsterInstance.from_config(str(seed_dagster)) as instance:
        (request,) = tick_sensor(seed, "file_drops", instance).run_requests
    sensor_run = {"select": DAILY, "tags": request.tags, "run_config": request.run_config}
    backfill = {"select": DAILY, "tags": range_tags(_date("2024-06-03"), _date("2024-06-07"))}

    # The reference: the same two runs one after the other, in this process (the same instance
    # config and definitions as the children, without two more interpreter starts).
    sequential, sequential_dagster = copy_home(seed, seed_dagster, tmp_path / "sequential")
    with dg.DagsterInstance.from_config(str(sequential_dagster)) as instance:
        for spec in (sensor_run, backfill):
            result = materialize(
                sequential,
                select=spec["select"],
                tags=spec["tags"],
                run_config=spec.get("run_config"),
                instance=instance,
            )
            assert result.success

    concurrent, concurrent_dagster = copy_home(seed, seed_dagster, tmp_path / "concurrent")
    children = [start_child(concurrent, concurrent_dagster, s) for s in (sensor_run, backfill)]
    for child in children:
        out, _ = child.communicate(timeout=600)
        assert child.returncode == 0, out[-3000:]

    assert differing_tables(tables(concurrent), tables(sequential)) == []
    assert not tables(concurrent)["silver.daily_bars"].query("ticker == 'MSFT'").empty

    with dg.DagsterInstance.from_config(str(concurrent_dagster)) as instance:
        runs = instance.get_run_records(
            filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS])
        )
        assert len(runs) == 2
        first, second = sorted(runs, key=lambda r: r.start_time)
        assert second.start_time < first.end_time, "the two runs did not run at the same time"
        steps = pool_steps(concurrent)
        a = pool_step_intervals(instance, first.dagster_run.run_id, steps)
        b = pool_step_intervals(instance, second.dagster_run.run_id, steps)
        assert a and b
        overlapping = [(x, y) for x in a for y in b if x[0] < y[1] and y[0] < x[1]]
        assert overlapping == [], "warehouse steps of the two runs overlapped"
        assert pool_holders(instance) == []
        assert instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL).slot_count == 1


@pytest.mark.slow
def test_a_run_whose_process_died_is_failed_and_its_slot_freed_by_the_daemon(tmp_path):
    settings = make_settings(tmp_path / "home", tickers="AAPL")
    dagster_home = tmp_path / "dagster"
    write_instance_yaml(dagster_home)  # the repo's monitoring values, unchanged
    spec = {
        "select": ["raw/daily_bars", "bronze/daily_bars"],
        "tags": range_tags(_date("2024-06-07"), _date("2024-06-07")),
    }
    code, out = run_child(settings, dagster_home, spec, "warehouse.replace")
    assert killed(code), out[-3000:]

    empty = tmp_path / "empty_location.py"
    empty.write_text("import dagster as dg\n\ndefs = dg.Definitions()\n")
    log = (tmp_path / "daemon.log").open("w")
    daemon = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-f", str(empty)],
        env={**_env(), "DAGSTER_HOME": str(dagster_home)},
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            (dead,) = instance.get_runs(
                filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
            )
            assert dead.run_id in {run for run, _ in pool_holders(instance)}
            up = _wait(lambda: "MONITORING" in instance.get_daemon_heartbeats(), 180, tmp_path)
            done = _wait(
                lambda: (
                    instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.FAILURE
                    and not pool_holders(instance)
                ),
                STUCK_RUN_BOUND_SECONDS + 30,
                tmp_path,
            )
            assert done - up <= STUCK_RUN_BOUND_SECONDS, f"took {done - up:.0f} s"
            failure = instance.all_logs(dead.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
            assert "run worker pid" in failure[-1].message
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
        log.close()


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("MARKETFLOW_")}


def _wait(probe, seconds: float, logs: Path) -> float:
    """Poll until `probe()` holds (at most `seconds`); returns the monotonic time it did."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if probe():
            return time.monotonic()
        time.sleep(0.5)
    raise AssertionError(f"timed out; daemon log:\n{(logs / 'daemon.log').read_text()[-4000:]}")
