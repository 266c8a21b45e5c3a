"""Crash-test harness: real child processes killed at named phases, and what to check after.

A child (`python -m marketflow_tests.fault_harness '<json spec>'`) builds the definitions from
its environment (MARKETFLOW_*), opens the Dagster instance of DAGSTER_HOME (the repo's
dagster.yaml: pools enforced, the liveness-checking launcher) and materializes a selection as one
run, as `dagster asset materialize` does. With MARKETFLOW_FAULT set it SIGKILLs itself at that
phase (`marketflow_assets/faults.py`). The parent then checks the warehouse and the lake, lets
Dagster's own run-monitoring and slot-freeing loops do their work, and re-runs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import yaml

from marketflow_assets.faults import FAULT_ENV
from marketflow_assets.resources import WAREHOUSE_POOL
from marketflow_assets.settings import Settings

REPO = Path(__file__).resolve().parents[1]
# Columns that name a fetch (a uuid per provider request): a re-run after a crash fetches again.
FETCH_LINEAGE = {"fetch_id", "raw_object"}
LAYERS = ("bronze", "silver", "gold")
CHILD_TIMEOUT_SECONDS = 900


def write_instance_yaml(dagster_home: Path, **run_monitoring) -> None:
    """The repo's dagster.yaml, with run-monitoring values a test can wait for."""
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    config["run_monitoring"].update(run_monitoring)
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config))


def child_env(
    settings: Settings, dagster_home: Path, fault: str | None = None, extra: dict | None = None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETFLOW_")}
    env.update(
        {
            "MARKETFLOW_HOME": str(settings.home),
            "MARKETFLOW_SOURCE": settings.source,
            "MARKETFLOW_TICKERS": settings.tickers or "",
            "MARKETFLOW_SIMULATOR_NOW": settings.simulator_now.isoformat(),
            "MARKETFLOW_SIMULATOR_SEED": str(settings.simulator_seed),
            "DAGSTER_HOME": str(dagster_home),
            "PYTHONPATH": str(REPO),
        }
    )
    if fault:
        env[FAULT_ENV] = fault
    env.update(extra or {})
    return env


def start_child(
    settings: Settings,
    dagster_home: Path,
    spec: dict,
    fault: str | None = None,
    extra_env: dict | None = None,
) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "marketflow_tests.fault_harness", json.dumps(spec)],
        env=child_env(settings, dagster_home, fault, extra_env),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run_child(
    settings: Settings,
    dagster_home: Path,
    spec: dict,
    fault: str | None = None,
    extra_env: dict | None = None,
):
    """Run a child to its end; returns (returncode, output)."""
    child = start_child(settings, dagster_home, spec, fault, extra_env)
    out, _ = child.communicate(timeout=CHILD_TIMEOUT_SECONDS)
    return child.returncode, out


def killed(returncode: int) -> bool:
    return returncode == -signal.SIGKILL


# -- state checks ----------------------------------------------------------------------------------
def tables(settings: Settings) -> dict[str, pd.DataFrame]:
    """Every table of the data layers, fetch lineage left out, rows in a canonical order."""
    if not settings.warehouse.exists():
        return {}
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        names = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema IN ('bronze', 'silver', 'gold') ORDER BY 1, 2"
        ).fetchall()
        out = {}
        for schema, name in names:
            frame = con.execute(f'SELECT * FROM {schema}."{name}"').df()
            frame = frame.drop(columns=[c for c in frame.columns if c in FETCH_LINEAGE])
            cols = list(frame.columns)
            out[f"{schema}.{name}"] = frame.sort_values(cols, na_position="first").reset_index(
                drop=True
            )
        return out
    finally:
        con.close()


def same_table(a: pd.DataFrame | None, b: pd.DataFrame | None) -> bool:
    if a is None or b is None:
        return (a is None or a.empty) and (b is None or b.empty)
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return False
    try:
        pd.testing.assert_frame_equal(a, b, check_dtype=False, rtol=1e-12, atol=0)
    except AssertionError:
        return False
    return True


def differing_tables(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> list[str]:
    return sorted(n for n in set(a) | set(b) if not same_table(a.get(n), b.get(n)))


def pool_holders(instance: dg.DagsterInstance) -> list[tuple[str, str]]:
    """(run id, step) of every claimed `duckdb_warehouse` slot."""
    info = instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL)
    return [(slot.run_id, slot.step_key) for slot in info.claimed_slots]


class _DaemonContext:
    """What Dagster's monitoring loop needs from the daemon's workspace: the instance (runs are
    never resumed: `max_resume_run_attempts` is 0)."""

    def __init__(self, instance: dg.DagsterInstance):
        self.instance = instance

    def create_request_context(self):
        return None


def monitor_once(instance: dg.DagsterInstance) -> None:
    """One iteration of the MONITORING daemon: run health, then freeing slots of ended runs."""
    from dagster._daemon.monitoring import (
        execute_concurrency_slots_iteration,
        execute_run_monitoring_iteration,
    )

    logger = logging.getLogger("marketflow.tests.monitoring")
    context = _DaemonContext(instance)
    for error in execute_run_monitoring_iteration(context, logger):
        assert error is None, error
    for error in execute_concurrency_slots_iteration(context, logger):
        assert error is None, error


def monitor_until_clear(instance: dg.DagsterInstance, deadline_seconds: float = 30.0) -> float:
    """Run the monitoring loop until no run is in progress and no pool slot is held; returns
    the seconds it took."""
    started = time.monotonic()
    while True:
        monitor_once(instance)
        in_progress = instance.get_runs(
            filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
        )
        if not in_progress and not pool_holders(instance):
            return time.monotonic() - started
        assert time.monotonic() - started < deadline_seconds, (
            f"still held after {deadline_seconds} s: runs {[r.run_id for r in in_progress]}, "
            f"slots {pool_holders(instance)}"
        )
        time.sleep(0.5)


def copy_home(source: Settings, source_dagster: Path, target_root: Path) -> tuple[Settings, Path]:
    """A copy of a MARKETFLOW_HOME and its Dagster home (a state to crash from)."""
    home = target_root / "home"
    dagster_home = target_root / "dagster"
    shutil.copytree(source.home, home, symlinks=True)  # serving/current.duckdb stays a link
    shutil.copytree(source_dagster, dagster_home)
    return dataclasses.replace(source, home=home), dagster_home


# -- the child -------------------------------------------------------------------------------------
def _materialize(spec: dict) -> int:
    from marketflow_assets.definitions import build_definitions

    defs = build_definitions(Settings.from_env())
    # As the UI does: a multi-asset that cannot be split is selected whole.
    selection = dg.AssetSelection.from_coercible(spec["select"]).required_multi_asset_neighbors()
    keys = selection.resolve(defs.resolve_asset_graph())
    job = defs.resolve_implicit_global_asset_job_def()
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            asset_selection=list(keys),
            tags=spec.get("tags", {}),
            run_config=spec.get("run_config"),
            instance=instance,
            raise_on_error=False,
        )
    print(json.dumps({"run_id": result.run_id, "success": result.success}))
    return 0 if result.success else 1


def _sensor(spec: dict) -> int:
    from marketflow_assets.definitions import build_definitions
    from marketflow_assets.resources import build_resources

    settings = Settings.from_env()
    defs = build_definitions(settings)
    with (
        dg.DagsterInstance.get() as instance,
        dg.build_sensor_context(
            instance=instance,
            cursor=spec.get("cursor"),
            definitions=defs,
            resources=build_resources(settings),
            sensor_name=spec["sensor"],
        ) as context,
    ):
        data = defs.resolve_sensor_def(spec["sensor"]).evaluate_tick(context)
    print(json.dumps({"requests": len(data.run_requests or []), "cursor": data.cursor}))
    return 0


def _alert(spec: dict) -> int:
    from marketflow_assets.automation.alerts import Alert, raise_alerts
    from marketflow_assets.resources import build_resources

    resources = build_resources(Settings.from_env())
    # As a sensor gets them: configured, secrets (dg.EnvVar) resolved.
    alerting = resources["alerting"].process_config_and_initialize()
    with resources["warehouse"].process_config_and_initialize_cm() as warehouse:
        alert = Alert(**spec["alert"])
        raise_alerts([alert], alerting, warehouse, logging.getLogger())
    return 0


if __name__ == "__main__":
    _spec = json.loads(sys.argv[1])
    _mode = {"materialize": _materialize, "sensor": _sensor, "alert": _alert}
    sys.exit(_mode[_spec.get("mode", "materialize")](_spec))
