"""The warehouse lock: one process at a time on the DuckDB file even where no pool is enforced
(ephemeral instances: the CLI without DAGSTER_HOME, tests, the benchmark); released by the
kernel when its holder is killed; waits and timeouts name the holder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import dagster as dg
import pytest

from marketflow_assets.automation.common import WarehouseBusy, warehouse_connection
from marketflow_assets.storage.warehouse import WarehouseResource
from marketflow_assets.storage.warehouse_lock import (
    WarehouseLockTimeout,
    lock_path,
    warehouse_lock,
)

HOLD = (
    "import sys, time\n"
    "from marketflow_assets.storage.warehouse_lock import warehouse_lock\n"
    "with warehouse_lock(sys.argv[1], timeout_seconds=5, what='silver/daily_bars', run_id='r-42'):\n"
    "    print('holding', flush=True)\n"
    "    time.sleep(120)\n"
)


@pytest.fixture
def holder(tmp_path):
    """Another process holding the warehouse lock (killed with SIGKILL at the end)."""
    database = str(tmp_path / "warehouse.duckdb")
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, database], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == "holding"
    yield database, child
    if child.poll() is None:
        child.kill()
        child.wait()


def test_a_waiter_times_out_naming_the_holder(holder):
    database, child = holder
    lines = []
    started = time.monotonic()
    with (
        pytest.raises(WarehouseLockTimeout) as error,
        warehouse_lock(database, timeout_seconds=1.0, what="gold", log=lines.append),
    ):
        pass
    assert time.monotonic() - started >= 1.0
    message = str(error.value)
    assert (
        f"pid {child.pid}" in message and "run r-42" in message and "silver/daily_bars" in message
    )
    assert lines and f"pid {child.pid}" in lines[0]  # the wait is logged with the holder


def test_a_killed_holder_releases_the_lock_at_once(holder):
    database, child = holder
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    started = time.monotonic()
    with warehouse_lock(database, timeout_seconds=5.0, what="next run"):
        assert time.monotonic() - started < 1.0
    assert lock_path(database).exists()  # kept: deleting a lock file races its next holder


def test_run_steps_fail_clearly_and_sensors_skip_while_another_process_holds_it(holder):
    database, child = holder
    resource = WarehouseResource(database=database, lock_timeout_seconds=0.5)
    with pytest.raises(dg.Failure) as error, resource.get_connection():
        pass
    assert f"pid {child.pid}" in str(error.value.description)
    with (
        pytest.raises(WarehouseBusy, match=f"pid {child.pid}"),
        warehouse_connection(database, read_only=True, attempts=1, wait_seconds=0.1),
    ):
        pass


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    database = str(tmp_path / "warehouse.duckdb")
    resource = WarehouseResource(database=database, lock_timeout_seconds=0.5)
    with resource.get_connection() as outer, resource.get_connection() as inner:
        outer.execute("CREATE TABLE t AS SELECT 1 AS x")
        assert inner.execute("SELECT x FROM t").fetchall() == [(1,)]
    # and free afterwards for another process
    code = subprocess.run(
        [sys.executable, "-c", HOLD.replace("time.sleep(120)", "pass"), database],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert code.returncode == 0, code.stderr


def test_the_timeout_comes_from_the_environment():
    from marketflow_assets.resources import build_resources
    from marketflow_assets.settings import Settings

    settings = Settings.from_env({"MARKETFLOW_WAREHOUSE_LOCK_TIMEOUT_SECONDS": "42.5"})
    assert build_resources(settings)["warehouse"].lock_timeout_seconds == 42.5
    assert Settings.from_env({}).warehouse_lock_timeout_seconds == 600.0
