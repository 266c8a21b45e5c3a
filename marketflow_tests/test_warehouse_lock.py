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
    is_kept,
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


# Another process opening the warehouse: waits for the lock, then opens DuckDB on the file.
OPEN = (
    "import sys, time, duckdb\n"
    "from marketflow_assets.storage.warehouse_lock import warehouse_lock\n"
    "started = time.monotonic()\n"
    "with warehouse_lock(sys.argv[1], timeout_seconds=float(sys.argv[2]), what='next run'):\n"
    "    con = duckdb.connect(sys.argv[1])\n"
    "    print(con.execute('SELECT count(*) FROM t').fetchall()[0][0], flush=True)\n"
    "    con.close()\n"
    "print(f'waited {time.monotonic() - started:.2f}', flush=True)\n"
)


def _kept_resource(database: str) -> WarehouseResource:
    """A warehouse resource as a run's process has it (set up for the run: keeps it open)."""
    resource = WarehouseResource(database=database, lock_timeout_seconds=5.0)
    resource.setup_for_execution(dg.build_init_resource_context())
    return resource


def test_a_run_keeps_the_warehouse_open_between_connections_until_another_process_asks(
    tmp_path,
):
    database = str(tmp_path / "warehouse.duckdb")
    resource = _kept_resource(database)
    try:
        with resource.get_connection() as con:
            con.execute("CREATE TABLE t AS SELECT range AS x FROM range(3)")
        # Kept after the connection closed: the next one reuses DuckDB's open instance.
        assert is_kept(database)
        with resource.get_connection() as con:
            con.execute("INSERT INTO t VALUES (3)")
        assert is_kept(database)
        # Another process asks: it is let go within the watcher's interval, committed rows
        # (still in the write-ahead log) included.
        other = subprocess.run(
            [sys.executable, "-c", OPEN, database, "10"], capture_output=True, text=True
        )
        assert other.returncode == 0, other.stderr
        rows, waited = other.stdout.split()[0], float(other.stdout.split()[-1])
        assert rows == "4" and waited < 5
        assert not is_kept(database)
        # The run goes on: it opens the warehouse again and keeps it again.
        with resource.get_connection() as con:
            assert con.execute("SELECT count(*) FROM t").fetchall() == [(4,)]
        assert is_kept(database)
    finally:
        resource.teardown_after_execution(dg.build_init_resource_context())
    assert not is_kept(database)
    # The run's end released it: another process gets it at once.
    other = subprocess.run(
        [sys.executable, "-c", OPEN, database, "0.5"], capture_output=True, text=True
    )
    assert other.returncode == 0, other.stderr


def test_a_subprocess_block_closes_the_kept_instance_but_keeps_the_lock(tmp_path):
    """dbt opens the warehouse file from its own process inside `lock()`: the run's kept DuckDB
    instance must be closed by then (DuckDB admits one process per file)."""
    database = str(tmp_path / "warehouse.duckdb")
    resource = _kept_resource(database)
    try:
        with resource.get_connection() as con:
            con.execute("CREATE TABLE t AS SELECT 1 AS x")
        assert is_kept(database)
        with resource.lock("dbt build"):
            assert not is_kept(database)
            opened = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import sys, duckdb; duckdb.connect(sys.argv[1]).close()",
                    database,
                ],
                capture_output=True,
                text=True,
            )
            assert opened.returncode == 0, opened.stderr
            # ... while the lock stays this process's: a waiter times out.
            waiter = subprocess.run(
                [sys.executable, "-c", OPEN, database, "0.3"], capture_output=True, text=True
            )
            assert waiter.returncode != 0 and "still in use" in waiter.stderr
    finally:
        resource.teardown_after_execution(dg.build_init_resource_context())


def test_a_resource_outside_a_run_closes_the_warehouse_after_each_connection(tmp_path):
    database = str(tmp_path / "warehouse.duckdb")
    resource = WarehouseResource(database=database, lock_timeout_seconds=0.5)
    with resource.get_connection() as con:
        con.execute("CREATE TABLE t AS SELECT 1 AS x")
    assert not is_kept(database)
