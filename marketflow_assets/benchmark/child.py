"""One benchmark measurement, in its own process: `python -m marketflow_assets.benchmark.child
SPEC.json RESULT.json`.

The parent sets the environment (MARKETFLOW_HOME, the simulator clock, DAGSTER_HOME, ...) before
this process starts, because the partitions definition reads MARKETFLOW_START_DATE at import.
A Dagster spec runs the selection through Dagster's own execution, as `make demo` does: the
implicit asset job's `execute_in_process` with partition-range tags (or one partition key),
then reads that run's event log for the step breakdown and counts the rows it wrote.
"""

from __future__ import annotations

import datetime as dt
import functools
import gc
import json
import operator
import os
import sys
import time
import traceback
from pathlib import Path

from marketflow_assets.benchmark.profiling import profiled
from marketflow_assets.benchmark.scenarios import RunSpec
from marketflow_assets.benchmark.steps import Event, run_breakdown


def _timestamp(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if value.tzinfo is None:  # run storages keep UTC without a zone
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


def _run_events(instance, run_id: str) -> tuple[list[Event], list]:
    """The run's events as (time, type, step) read from the event rows' columns, and its check
    evaluations deserialized. Deserializing every event (`instance.all_logs`) would hold tens
    of thousands of them at once after a 10-year range run: the harness's own memory peak,
    above the run's."""
    from dagster._core.storage.event_log.schema import SqlEventLogStorageTable as table
    from dagster._serdes import deserialize_value
    from sqlalchemy import select

    storage = instance.event_log_storage
    query = select(table.c.timestamp, table.c.dagster_event_type, table.c.step_key).where(
        table.c.run_id == run_id, table.c.dagster_event_type.is_not(None)
    )
    checks = select(table.c.event).where(
        table.c.run_id == run_id, table.c.dagster_event_type == "ASSET_CHECK_EVALUATION"
    )
    with storage.run_connection(run_id) as conn:
        events = [Event(_timestamp(stamp), kind, step) for stamp, kind, step in conn.execute(query)]
        evaluations = [deserialize_value(text) for (text,) in conn.execute(checks)]
    return events, evaluations


def _check_results(evaluations) -> dict:
    passed, failed = 0, []
    for entry in evaluations:
        data = entry.dagster_event.event_specific_data
        if data.passed:
            passed += 1
        else:
            failed.append(
                f"{data.asset_key.to_user_string()}:{data.check_name} ({data.severity.value})"
            )
    return {"passed": passed, "failed": failed}


def _mib(path: Path) -> float:
    """Size of a file or a folder tree, MiB (0 when missing)."""
    if path.is_file():
        size = path.stat().st_size
    else:
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0
    return round(size / 2**20, 1)


def _warehouse_rows(spec: RunSpec, warehouse: Path) -> dict:
    import duckdb

    if not warehouse.exists():
        return {"main": 0, "tables": {}}
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        tables = {
            name: con.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0]
            for (name,) in con.execute(
                "SELECT table_schema || '.' || table_name FROM information_schema.tables "
                "WHERE table_schema IN ('bronze', 'silver', 'gold') ORDER BY 1"
            ).fetchall()
        }
        main = 0
        if spec.main_table in tables and spec.window:
            main = con.execute(
                f"SELECT count(*) FROM {spec.main_table} WHERE session_date BETWEEN ? AND ?",
                [dt.date.fromisoformat(spec.window[0]), dt.date.fromisoformat(spec.window[1])],
            ).fetchall()[0][0]
    finally:
        con.close()
    return {"main": main, "tables": tables}


def run_dagster(spec: RunSpec) -> dict:
    t0 = time.time()
    import dagster  # noqa: F401 - imported here so its cost is timed (t1 - t0)

    t1 = time.time()
    # Builds the definitions from the environment at import, as `dagster asset materialize -m`.
    from marketflow_assets import cadence
    from marketflow_assets.definitions import defs
    from marketflow_assets.settings import Settings

    settings = Settings.from_env()
    selection = functools.reduce(
        operator.or_, (getattr(cadence, f"{name}_assets") for name in spec.selection)
    )
    keys = selection.resolve(defs.resolve_asset_graph())
    job = defs.resolve_implicit_global_asset_job_def()
    instance = run_instance(spec.instance)
    t2 = time.time()

    tags = {"marketflow/benchmark": spec.name}
    if spec.partition_range:
        tags["dagster/asset_partition_range_start"] = spec.partition_range[0]
        tags["dagster/asset_partition_range_end"] = spec.partition_range[1]
    with profiled(spec.profile):
        call_start = time.time()
        result = job.execute_in_process(
            asset_selection=list(keys),
            partition_key=spec.partition,
            tags=tags,
            instance=instance,
            raise_on_error=False,
        )
        call_end = time.time()

    run_id, success = result.run_id, bool(result.success)
    del result  # its event list and captured outputs: the run's, not the report's memory
    gc.collect()
    record = instance.get_run_record_by_id(run_id)
    events, evaluations = _run_events(instance, run_id)
    breakdown = run_breakdown(
        events,
        run_created=_timestamp(record.create_timestamp) if record else None,
        call_start=call_start,
        call_end=call_end,
    )
    failed_steps = [s["step"] for s in breakdown["steps"] if s["status"] == "failure"]
    out = {
        "ok": success,
        "run_id": run_id,
        "assets": sorted(k.to_user_string() for k in keys),
        "run_end": call_end,
        "timing": {
            "import_dagster_s": round(t1 - t0, 3),
            "load_definitions_s": round(t2 - t1, 3),
            "run_s": round(call_end - call_start, 3),
        },
        "dagster": breakdown,
        "checks": _check_results(evaluations),
        "failed_steps": failed_steps,
        "rows": _warehouse_rows(spec, settings.warehouse),
        "disk_mib": {
            "warehouse": _mib(settings.warehouse),
            "lake": _mib(settings.lake_root),
            "dagster_home": _mib(settings.dagster_home),  # the sqlite instance's storage
        },
        "check_executions": _check_execution_statuses(instance),
    }
    if spec.instance != "memory":
        instance.dispose()
    return out


def run_instance(kind: str):
    """The instance a measured run uses: "memory" is MarketFlow's in-memory instance (batched
    event writes, as `make demo` and the tests use), anything else the one `DAGSTER_HOME`
    configures (the runner writes the sqlite or postgres `dagster.yaml` there)."""
    import dagster as dg

    if kind == "memory":
        from marketflow_assets.instance.batched_events import batched_ephemeral_instance

        return batched_ephemeral_instance()
    return dg.DagsterInstance.get()


def _check_execution_statuses(instance) -> dict:
    """{status: rows} of the instance's asset check executions (PLANNED must be 0 after a run)."""
    from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
    from sqlalchemy import func, select

    storage = instance.event_log_storage
    table = AssetCheckExecutionsTable
    with storage.index_connection() as conn:
        rows = conn.execute(
            select(table.c.execution_status, func.count()).group_by(table.c.execution_status)
        ).fetchall()
    return {str(status): int(n) for status, n in rows}


def run_kernel(spec: RunSpec) -> dict:
    from marketflow_assets.benchmark import kernel

    return kernel.measure(spec)


def main(argv: list[str]) -> int:
    spec_path, result_path = argv
    spec = RunSpec.from_dict(json.loads(Path(spec_path).read_text()))
    gc.collect()
    try:
        if spec.kind == "dagster":
            result = run_dagster(spec)
        elif spec.kind == "floor":
            from marketflow_assets.benchmark import floor

            result = floor.measure(spec)
        elif spec.kind == "serving":
            from marketflow_assets.benchmark import serving

            result = serving.measure(spec)
        else:
            result = run_kernel(spec)
    except Exception:
        result = {"ok": False, "error": traceback.format_exc()}
    result["pid"] = os.getpid()
    Path(result_path).write_text(json.dumps(result, default=str))
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
