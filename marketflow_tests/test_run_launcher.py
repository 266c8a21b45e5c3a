"""The liveness-checking run launcher: a run's worker is judged from the pid it logged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import dagster as dg
from dagster._core.events import EngineEventData
from dagster._core.launcher import WorkerStatus

from marketflow_assets.run_launcher import LivenessCheckingRunLauncher, process_alive, run_worker


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def test_process_alive_sees_exit_zombies_and_reused_pids():
    assert process_alive(os.getpid(), time.time())[0]
    # created after it was "seen": a newer process that reused the pid
    alive, why = process_alive(os.getpid(), time.time() - 10**6)
    assert not alive and "reused" in why
    child = _sleeper()
    os.kill(child.pid, signal.SIGKILL)
    time.sleep(0.5)  # not reaped yet: a zombie
    alive, why = process_alive(child.pid, time.time())
    assert not alive and "zombie" in why
    child.wait()
    alive, why = process_alive(child.pid, time.time())
    assert not alive and "no longer exists" in why


def test_health_of_a_run_follows_its_worker_process(tmp_path):
    (tmp_path / "dagster.yaml").write_text(
        "run_launcher:\n  module: marketflow_assets.run_launcher\n"
        "  class: LivenessCheckingRunLauncher\n"
    )
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        launcher = instance.run_launcher
        assert isinstance(launcher, LivenessCheckingRunLauncher)
        assert launcher.supports_check_run_worker_health
        run = instance.create_run_for_job(dg.GraphDefinition("noop").to_job())
        assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING  # no pid yet

        child = _sleeper()
        instance.report_engine_event(
            f"Started process for run (pid: {child.pid}).",
            run,
            EngineEventData.in_process(child.pid),
        )
        assert run_worker(instance, run.run_id)[0] == child.pid
        assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
        child.kill()
        child.wait()
        health = launcher.check_run_worker_health(run)
        assert health.status == WorkerStatus.FAILED and str(child.pid) in health.msg
