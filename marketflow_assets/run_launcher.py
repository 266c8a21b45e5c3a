"""A run launcher whose runs can be seen to die: Dagster's default launcher plus a health check.

Dagster's run monitoring (the daemon's MONITORING loop, on in `dagster.yaml`) fails a STARTED run
whose worker is gone only if the run launcher can tell; `DefaultRunLauncher` cannot, so a run
whose process was killed (SIGKILL, OOM killer, a reboot, the host's agent) stayed STARTED for
ever, kept its `duckdb_warehouse` pool slot, and every sensor waiting for "daily work in
progress" waited with it. This launcher launches runs exactly like the default one (through the
code server) and answers the health check from the run's own event log: every run worker logs
its pid when it starts (`Started process for run (pid: N)` from the code server, `Executing steps
in process (pid: N)` from `dagster asset materialize` and other in-process runs). The run is dead
when that process no longer exists, is a zombie, or is a newer process that reused the pid.

What follows (settings in `dagster.yaml`, `run_monitoring`): the daemon polls every
`poll_interval_seconds`, fails a dead run with the reason, and the same loop frees the pool slots
of finished runs after `free_slots_after_run_end_seconds`. A run that has not logged a pid yet,
or whose worker cannot be seen (another host or container), counts as running; those are bounded
by `max_runtime_seconds` and `start_timeout_seconds`. The warehouse is a local DuckDB file, so
its run workers run on this host and can be seen.
"""

from __future__ import annotations

import psutil
from dagster import DagsterEventType, DagsterRun, DefaultRunLauncher
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus

# Messages of the engine events that carry the run worker's pid (not a step subprocess's).
RUN_WORKER_EVENTS = ("Started process for run", "Executing steps in process")
_EVENTS_SCANNED = 100


def run_worker(instance, run_id: str) -> tuple[int, float] | None:
    """(pid, when it was logged) of a run's worker process, or None if not logged yet."""
    records = instance.get_records_for_run(
        run_id, of_type=DagsterEventType.ENGINE_EVENT, limit=_EVENTS_SCANNED
    ).records
    for record in records:
        entry = record.event_log_entry
        if not (entry.message or "").startswith(RUN_WORKER_EVENTS):
            continue
        data = entry.dagster_event.engine_event_data if entry.dagster_event else None
        pid = data.metadata.get("pid") if data else None
        if pid is not None:
            return int(pid.value), entry.timestamp
    return None


def process_alive(pid: int, seen_at: float) -> tuple[bool, str]:
    """Whether the process that logged `pid` at `seen_at` (epoch seconds) still runs."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False, f"run worker pid {pid} has exited (zombie)"
        if process.create_time() > seen_at + 1:
            return False, f"run worker pid {pid} has exited (pid reused by a newer process)"
    except psutil.NoSuchProcess:
        return False, f"run worker pid {pid} no longer exists"
    except psutil.AccessDenied:
        return True, f"run worker pid {pid} exists (not ours to inspect)"
    return True, f"run worker pid {pid} is running"


class LivenessCheckingRunLauncher(DefaultRunLauncher):
    """`DefaultRunLauncher` that tells run monitoring whether a run's worker process is alive."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        worker = run_worker(self._instance, run.run_id)
        if worker is None:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "run worker has not logged its pid")
        alive, message = process_alive(*worker)
        if alive:
            return CheckRunHealthResult(WorkerStatus.RUNNING, message)
        return CheckRunHealthResult(WorkerStatus.FAILED, message)
