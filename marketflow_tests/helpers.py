"""Driving the real asset graph from tests: settings in a temporary home, Dagster's own
execution (`materialize`), and small readers for the warehouse and the lake."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pandas as pd
import yaml
from dagster._core.events.log import EventLogEntry

from marketflow_assets.contracts.fundamentals import BRONZE_FINANCIAL_STATEMENTS
from marketflow_assets.definitions import build_definitions
from marketflow_assets.instance.batched_events import batched_ephemeral_instance
from marketflow_assets.repair_report.fixtures import payload_warehouse
from marketflow_assets.resources import TICKERS_TAG
from marketflow_assets.settings import Settings
from marketflow_assets.sources.base import BarsQuery
from marketflow_assets.sources.simulator import SimulatorFaults, SimulatorSource
from marketflow_assets.storage.raw_lake import RawLake
from marketflow_assets.transforms.fundamentals import SILVER_FACTS_SQL
from marketflow_assets.transforms.payloads import bar_dates, iso_dates, session_dates
from marketflow_assets.transforms.repairs import RepairSwitches

REPO = Path(__file__).resolve().parents[1]
# A Friday evening after the close: every session up to 2024-06-07 is final.
FRIDAY_EVENING = dt.datetime(2024, 6, 7, 22, 0, tzinfo=dt.UTC)
SMALL_UNIVERSE = "AAPL,MSFT,KO,TSLA,^GSPC"


def make_settings(home: Path, **overrides: Any) -> Settings:
    base = Settings(
        home=home,
        source="simulator",
        tickers=SMALL_UNIVERSE,
        simulator_now=FRIDAY_EVENING,
    )
    return dataclasses.replace(base, **overrides)


def materialize(
    settings: Settings,
    *,
    select: str | Sequence[str] | dg.AssetSelection = "*",
    partition: str | None = None,
    partition_range: tuple[str, str] | None = None,
    tickers: Iterable[str] | None = None,
    run_config: dict | None = None,
    instance: dg.DagsterInstance | None = None,
    raise_on_error: bool = True,
    tags: dict[str, str] | None = None,
) -> dg.ExecuteInProcessResult:
    """Materialize a selection of the real graph as one run, as `dagster asset materialize`
    does: the implicit asset job with the definitions' own resources and executor."""
    defs = build_definitions(settings)
    run_tags = dict(tags or {})
    if partition_range:
        run_tags["dagster/asset_partition_range_start"] = partition_range[0]
        run_tags["dagster/asset_partition_range_end"] = partition_range[1]
    if tickers is not None:
        run_tags[TICKERS_TAG] = ",".join(tickers)
    if isinstance(select, str):
        select = [select]
    selection = (
        select
        if isinstance(select, dg.AssetSelection)
        else dg.AssetSelection.from_coercible(list(select))
    )
    # As the UI does: a multi-asset that cannot be split (silver's daily validation) is selected
    # whole when any of its assets is.
    keys = selection.required_multi_asset_neighbors().resolve(defs.resolve_asset_graph())
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        asset_selection=list(keys),
        partition_key=partition,
        tags=run_tags,
        run_config=run_config,
        # Dagster's ephemeral instance with MarketFlow's batched event writes, as `make demo`
        # and the benchmark use: a range run's per-session events cost one transaction.
        instance=instance or batched_ephemeral_instance(),
        raise_on_error=raise_on_error,
    )


@contextlib.contextmanager
def deployment_event_log_instance() -> Iterator[dg.DagsterInstance]:
    """`dg.instance_for_test()` (SQLite in a temporary DAGSTER_HOME) with the event log storage
    of the repo's dagster.yaml, as `make dev` and `dagster-daemon` record runs: MarketFlow's
    batched SQLite event log. Dagster's stock SQLite storage writes a range run's per-session
    check rows one connection and commit each (tens of seconds for a month of sessions)."""
    storage = yaml.safe_load((REPO / "dagster.yaml").read_text())["event_log_storage"]
    with dg.instance_for_test(overrides={"event_log_storage": storage}) as instance:
        yield instance


def query(settings: Settings, sql: str, params: Any = None) -> pd.DataFrame:
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        return con.execute(sql, params or []).df()
    finally:
        con.close()


def table(settings: Settings, name: str, order: str = "1") -> pd.DataFrame:
    return query(settings, f"SELECT * FROM {name} ORDER BY {order}")


def materializations(
    result: dg.ExecuteInProcessResult, key: Sequence[str]
) -> list[dg.AssetMaterialization]:
    return [
        m
        for m in result.get_asset_materialization_events()
        if m.asset_key == dg.AssetKey(list(key))
    ]


def output_metadata(result: dg.ExecuteInProcessResult, key: Sequence[str]) -> dict[str, Any]:
    mats = materializations(result, key)
    assert mats, f"{key} was not materialized"
    return {k: v.value for k, v in mats[0].materialization.metadata.items()}


def silver_facts(bronze_rows: pd.DataFrame) -> pd.DataFrame:
    """silver.financial_facts as `SILVER_FACTS_SQL` derives it from these bronze statement rows
    (an in-memory warehouse holding only them)."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("CREATE SCHEMA bronze")
        con.execute(BRONZE_FINANCIAL_STATEMENTS.ddl())
        con.register("bronze_rows", bronze_rows)
        con.execute("INSERT INTO bronze.financial_statements SELECT * FROM bronze_rows")
        return con.execute(f"SELECT * FROM ({SILVER_FACTS_SQL}) ORDER BY ALL").df()
    finally:
        con.close()


def land_daily_bars(raw: RawLake, frame: pd.DataFrame, fetched_at: dt.datetime):
    """Land a daily-bars payload (Yahoo columns and `Ticker`) as raw does: one object per
    session of each bar's own exchange, then the fetch's manifest."""
    partitions = iso_dates(
        session_dates(bar_dates(frame["Date"], frame["Ticker"]), frame["Ticker"])
    )
    return raw.land_frame(
        source="simulator",
        dataset="daily_bars",
        frame=frame,
        partitions=partitions,
        request={"tickers": sorted(set(frame["Ticker"]))},
        tickers={t: {"status": "ok", "rows": 1} for t in set(frame["Ticker"])},
        fetched_at=fetched_at,
        run_id="run-1",
    )


# Keys that order each of `ValidatedBars`' frames (silver bars, rejected rows, repair log) the
# same way whatever batch or route produced them.
VALIDATED_KEYS = {
    "bars": ["ticker", "session_date"],
    "rejected": ["ticker", "ts", "reason", "fetch_id", "raw_object"],
    "repairs": ["ticker", "session_date", "kind"],
}


def sorted_validated(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """`frame`, one of `ValidatedBars`' (`name`: bars, rejected or repairs), in key order."""
    keys = [k for k in VALIDATED_KEYS[name] if k in frame.columns]
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


def simulated_bronze_warehouse(
    tickers: Sequence[str],
    start: dt.date,
    end: dt.date,
    clock: dt.datetime,
    faults: SimulatorFaults,
) -> duckdb.DuckDBPyConnection:
    """An in-memory warehouse with the simulator's daily bars of `tickers` over [start, end]
    (seed 3, with `faults`) landed in bronze as one fetch, with their
    corporate actions: what the silver validation reads."""
    source = SimulatorSource(seed=3, clock=clock, faults=faults)
    payload = source.fetch_bars(BarsQuery(tuple(tickers), start, end, "1d"))
    con, _, _ = payload_warehouse(
        payload,
        source.name,
        fetch_id="f1",
        object_key="raw/daily.parquet",
        switches=RepairSwitches(),
    )
    return con


def event_log_entry(
    run_id: str,
    event_type: dg.DagsterEventType,
    data: Any,
    *,
    timestamp: float,
    step: str | None = None,
    job: str = "__ASSET_JOB",
    message: str | None = None,
) -> EventLogEntry:
    """An event of type `event_type` with `data` (its event-specific data) as a run's step
    writes it to the event log, for tests that store events without running a job."""
    event = dg.DagsterEvent(
        event_type_value=event_type.value,
        job_name=job,
        event_specific_data=data,
        step_key=step,
        message=message,
    )
    return EventLogEntry(
        error_info=None,
        level=logging.DEBUG,
        user_message="",
        run_id=run_id,
        timestamp=timestamp,
        step_key=step,
        job_name=job,
        dagster_event=event,
    )
