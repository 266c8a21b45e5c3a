"""The warm dbt (marketflow_assets/dbt_guard.py): a run's first dbt invocation is handed to a dbt
process started (and importing dbt) when the run began; it must behave as the dbt it replaces
(same output, same exit code), fall back to a cold dbt when there is none, serve one invocation
only, and die with the run process like a cold one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest

from marketflow_assets.assets.dbt import DBT_EXECUTABLE, DBT_PROJECT_DIR, MarketflowDbtCliResource
from marketflow_assets.dbt_guard import WARM_SOCKET_ENV, start_warm_dbt, warm_start_supported

pytestmark = pytest.mark.skipif(not warm_start_supported(), reason="warm dbt start is Linux-only")


def marketflow_dbt(*args: str, socket_name: str | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    env.pop(WARM_SOCKET_ENV, None)
    if socket_name is not None:
        env[WARM_SOCKET_ENV] = socket_name
    return subprocess.run(
        [DBT_EXECUTABLE, *args], env=env, cwd=DBT_PROJECT_DIR, capture_output=True, text=True
    )


def ended(process: subprocess.Popen, timeout: float = 30) -> bool:
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return True


def test_warm_dbt_runs_the_invocation_with_the_clients_output_and_exit_code():
    warm, name = start_warm_dbt()
    try:
        result = marketflow_dbt("--help", socket_name=name)
        assert result.returncode == 0, result.stderr
        assert "Usage: dbt" in result.stdout  # dbt's own output, through the client's pipe
        # The client returned only after the warm dbt had ended: it served its one invocation.
        assert ended(warm, timeout=5)
    finally:
        warm.kill()
        warm.wait()


def test_warm_dbt_passes_dbts_failure_exit_code_through():
    warm, name = start_warm_dbt()
    try:
        result = marketflow_dbt("no-such-command", socket_name=name)
        assert result.returncode == 2  # click's usage error, as a cold dbt exits
        assert "No such command" in result.stdout + result.stderr
        assert ended(warm, timeout=5)
    finally:
        warm.kill()
        warm.wait()


def test_without_a_warm_dbt_the_invocation_starts_dbt_cold():
    result = marketflow_dbt("--help", socket_name="marketflow-dbt-nobody-listens")
    assert result.returncode == 0, result.stderr
    assert "Usage: dbt" in result.stdout


def test_warm_dbt_dies_with_the_process_that_started_it(tmp_path: Path):
    pid_file = tmp_path / "warm.pid"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
                import pathlib, time
                from marketflow_assets.dbt_guard import start_warm_dbt
                warm, _ = start_warm_dbt()
                pathlib.Path({str(pid_file)!r}).write_text(str(warm.pid))
                time.sleep(600)
            """),
        ]
    )
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the parent never started a warm dbt"
            time.sleep(0.05)
        warm_pid = int(pid_file.read_text())
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{warm_pid}").exists() and "Z" not in _state(warm_pid):
            assert time.monotonic() < deadline, "the warm dbt outlived the killed run process"
            time.sleep(0.05)
    finally:
        parent.kill()
        parent.wait()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "Z"


def test_resource_hands_its_warm_dbt_to_one_invocation_and_reaps_it():
    resource = MarketflowDbtCliResource(
        project_dir=os.fspath(DBT_PROJECT_DIR), dbt_executable=DBT_EXECUTABLE
    )
    context = dg.build_init_resource_context()
    resource.setup_for_execution(context)
    warm = resource._warm[0]
    # Shown as dbt (`ps`, the bench's memory by command), as a cold dbt is.
    comm = Path(f"/proc/{warm.pid}/comm")
    deadline = time.monotonic() + 30
    while comm.read_text().strip() != "dbt" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert comm.read_text().strip() == "dbt"
    environment = resource.warm_start_environment()
    assert set(environment) == {WARM_SOCKET_ENV}
    assert resource.warm_start_environment() == {}  # one invocation per warm dbt
    resource.teardown_after_execution(context)  # unused: killed, not left behind
    assert warm.returncode is not None


def test_resource_without_warm_start_starts_no_dbt():
    resource = MarketflowDbtCliResource(
        project_dir=os.fspath(DBT_PROJECT_DIR), dbt_executable=DBT_EXECUTABLE, warm_start=False
    )
    context = dg.build_init_resource_context()
    resource.setup_for_execution(context)
    assert resource.warm_start_environment() == {}
    resource.teardown_after_execution(context)
