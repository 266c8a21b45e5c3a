"""Helpers for the automation tests (no tests here): tick a sensor or schedule of the real
definitions against a test instance, fake the daemon's bookkeeping (runs in progress,
materializations), and execute a run request in-process as the daemon would launch it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
import uuid
from collections.abc import Iterable
from typing import Any

import dagster as dg
from dagster._core.events import StepMaterializationData

from marketflow_assets.calendar import EXCHANGE_TZ
from marketflow_assets.definitions import build_definitions
from marketflow_assets.resources import build_resources
from marketflow_assets.settings import Settings
from marketflow_tests.helpers import event_log_entry


def et(*parts: int) -> dt.datetime:
    """A moment in exchange time (America/New_York)."""
    return dt.datetime(*parts, tzinfo=EXCHANGE_TZ)


def at(settings: Settings, moment: dt.datetime) -> Settings:
    """The same deployment with the (simulator) provider clock pinned at `moment`."""
    return dataclasses.replace(settings, simulator_now=moment.astimezone(dt.UTC))


def tick_sensor(
    settings: Settings,
    name: str,
    instance: dg.DagsterInstance,
    cursor: str | None = None,
) -> Any:
    """One evaluation of sensor `name`: SensorExecutionData (run_requests, skip_message, cursor)."""
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def(name)
    with dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        definitions=defs,
        resources=build_resources(settings),
        sensor_name=name,
    ) as context:
        return sensor.evaluate_tick(context)


def tick_schedule(settings: Settings, name: str, instance: dg.DagsterInstance, when: dt.datetime):
    defs = build_definitions(settings)
    schedule = defs.resolve_schedule_def(name)
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=when,
        repository_def=defs.get_repository_def(),
        resources=build_resources(settings),
    ) as context:
        return schedule.evaluate_tick(context)


def add_run(
    instance: dg.DagsterInstance,
    tags: dict[str, str],
    status: dg.DagsterRunStatus = dg.DagsterRunStatus.STARTED,
    asset_selection: Iterable[dg.AssetKey] | None = None,
) -> str:
    """A run record as the daemon would leave it (in progress by default, or done)."""
    run = dg.DagsterRun(
        job_name="__ASSET_JOB",
        run_id=str(uuid.uuid4()),
        tags=tags,
        status=status,
        asset_selection=frozenset(asset_selection) if asset_selection is not None else None,
    )
    instance.add_run(run)
    return run.run_id


def record_materializations(
    instance: dg.DagsterInstance,
    keys: Iterable[dg.AssetKey],
    partitions: Iterable[str],
    run_id: str = "",
) -> None:
    """Materialization events in the instance's event log, as a run would leave them."""
    for key in keys:
        for partition in partitions:
            instance.store_event(
                event_log_entry(
                    run_id,
                    dg.DagsterEventType.ASSET_MATERIALIZATION,
                    StepMaterializationData(
                        dg.AssetMaterialization(asset_key=key, partition=partition)
                    ),
                    timestamp=time.time(),
                )
            )


def target_job_name(settings: Settings, name: str) -> str:
    """The job a sensor's or schedule's run requests launch (its anonymous asset job)."""
    defs = build_definitions(settings)
    try:
        return defs.resolve_sensor_def(name).job_name
    except Exception:
        return defs.resolve_schedule_def(name).job_name


def target_keys(settings: Settings, name: str) -> set[dg.AssetKey]:
    """Assets a sensor's or schedule's run requests materialize (its target job)."""
    job = build_definitions(settings).resolve_job_def(target_job_name(settings, name))
    return set(job.asset_layer.selected_asset_keys)


def execute_request(
    settings: Settings,
    name: str,
    request: dg.RunRequest,
    keys: Iterable[dg.AssetKey] | None = None,
    instance: dg.DagsterInstance | None = None,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    """Run a request of sensor/schedule `name` in-process as the daemon launches it: its target
    job, tags (partition or range, tickers) and run config. `keys` narrows the selection (the
    request's own selection by default, e.g. without dbt to stay fast)."""
    defs = build_definitions(settings)
    job = defs.resolve_job_def(target_job_name(settings, name))
    selection = keys if keys is not None else request.asset_selection
    if selection:  # as the daemon does: silver's daily validation is selected whole
        selection = dg.AssetSelection.assets(*selection).required_multi_asset_neighbors()
        selection = selection.resolve(defs.resolve_asset_graph())
    return job.execute_in_process(
        asset_selection=sorted(selection, key=lambda k: k.path) if selection else None,
        partition_key=request.partition_key,
        tags=dict(request.tags),
        run_config=request.run_config or None,
        instance=instance,
        raise_on_error=raise_on_error,
    )


def without_dbt(settings: Settings, keys: Iterable[dg.AssetKey]) -> list[dg.AssetKey]:
    """`keys` minus the dbt marts (dbt costs ~8 s of start-up; tests/test_dbt_marts covers them)."""
    graph = build_definitions(settings).resolve_asset_graph()
    return [k for k in keys if "dbt" not in graph.get(k).kinds]
