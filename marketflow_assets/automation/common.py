"""What the schedules and sensors share: the clock, selections, run tags, runs in progress."""

import datetime as dt
import hashlib
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from marketflow_assets import cadence
from marketflow_assets.calendar import xnys
from marketflow_assets.resources import TICKERS_TAG, MarketDataResource
from marketflow_assets.storage.warehouse_lock import WarehouseLockTimeout, warehouse_lock

AUTOMATION_TAG = "marketflow/automation"  # which schedule/sensor asked for the run
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
PARTITION_TAG = "dagster/partition"
MAX_TICKERS_PER_RUN = 100
IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]

RAW_DAILY = dg.AssetKey(["raw", "daily_bars"])
SILVER_DAILY = dg.AssetKey(["silver", "daily_bars"])
SILVER_INTRADAY = dg.AssetKey(["silver", "intraday_bars_1m"])
SILVER_ACTIONS = dg.AssetKey(["silver", "corporate_actions"])
SILVER_SYMBOLS = dg.AssetKey(["silver", "symbols"])

# The end-of-day path: raw -> gold for daily bars, plus company profiles and symbols.
CLOSE_SELECTION = cadence.daily_assets | cadence.reference_assets
INTRADAY_SELECTION = cadence.intraday_assets
# Re-adjusting history after a new split/dividend: the earliest affected layer is silver.
ADJUSTMENT_SELECTION = dg.AssetSelection.assets(SILVER_DAILY, SILVER_INTRADAY) | (
    cadence.daily_assets & dg.AssetSelection.assets(SILVER_DAILY).downstream(include_self=False)
)
# silver/daily_bars is one output of the daily validation multi-asset: select it whole
ADJUSTMENT_SELECTION = ADJUSTMENT_SELECTION.required_multi_asset_neighbors()
FILE_DROP_SELECTION = cadence.daily_assets


# -- clock -------------------------------------------------------------------------------------
def automation_now(
    market_data: MarketDataResource, fallback: dt.datetime | None = None
) -> dt.datetime:
    """The provider's clock: the simulator's pinned clock if set, else `fallback` (a schedule's
    tick time) or the wall clock. Always UTC."""
    if market_data.source == "simulator" and market_data.simulator_now:
        return dt.datetime.fromisoformat(market_data.simulator_now).astimezone(dt.UTC)
    moment = fallback or dt.datetime.now(dt.UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def first_session(context: dg.SensorEvaluationContext | dg.ScheduleEvaluationContext) -> dt.date:
    """The first session partition of the definitions this sensor or schedule belongs to (built
    from their Settings by `build_definitions`; see `marketflow_assets.partitions`)."""
    partitions_def = context.repository_def.asset_graph.get(RAW_DAILY).partitions_def
    return dt.date.fromisoformat(partitions_def.start.strftime("%Y-%m-%d"))


# -- run requests ------------------------------------------------------------------------------
def range_tags(first: dt.date, last: dt.date) -> dict[str, str]:
    """A single run over sessions [first, last] (BackfillPolicy.single_run semantics)."""
    return {RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()}


def tickers_tag(tickers: Sequence[str]) -> dict[str, str]:
    return {TICKERS_TAG: ",".join(tickers)}


def digest(*parts: object) -> str:
    """Short stable hash of JSON-able parts (run keys, alert ids)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def batches(items: Sequence[str], size: int = MAX_TICKERS_PER_RUN) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def describe_tickers(tickers: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(tickers[:limit])
    return shown + (f" (+{len(tickers) - limit} more)" if len(tickers) > limit else "")


# -- runs in progress --------------------------------------------------------------------------
def active_runs(instance: dg.DagsterInstance, tags: dict[str, str] | None = None) -> list:
    return list(instance.get_runs(filters=dg.RunsFilter(statuses=IN_PROGRESS, tags=tags or {})))


def run_sessions(run) -> tuple[dt.date, dt.date] | None:
    """[first, last] session a run targets, from its partition tags; None if unpartitioned."""
    tags = run.tags
    if RANGE_START_TAG in tags and RANGE_END_TAG in tags:
        return dt.date.fromisoformat(tags[RANGE_START_TAG]), dt.date.fromisoformat(
            tags[RANGE_END_TAG]
        )
    if PARTITION_TAG in tags:
        day = dt.date.fromisoformat(tags[PARTITION_TAG])
        return day, day
    return None


def run_touches(run, keys: Iterable[dg.AssetKey]) -> bool:
    """Whether a run materializes any of `keys` (a run without a selection runs everything)."""
    selection = run.asset_selection
    return not selection or any(k in selection for k in keys)


RECENT_BACKFILLS = 50


def active_backfills_touching(
    instance: dg.DagsterInstance, keys: Iterable[dg.AssetKey]
) -> list[str]:
    """Ids of requested (in progress) backfills that target any of `keys`, among the latest
    `RECENT_BACKFILLS` (a requested backfill may not have created its run yet)."""
    wanted = set(keys)
    found = []
    for backfill in instance.get_backfills(limit=RECENT_BACKFILLS):
        if backfill.status.value != "REQUESTED":  # compared by value: the enum is not public
            continue
        targeted = set(backfill.asset_selection or ())
        if not targeted or targeted & wanted:
            found.append(backfill.backfill_id)
    return found


DAILY_WRITERS = (RAW_DAILY, SILVER_DAILY)


def daily_work_in_progress(instance: dg.DagsterInstance) -> str | None:
    """A queued/running run or a requested backfill that builds raw or silver daily bars, or
    None. Sensors that add rows for some tickers wait for it, so a run's checks (which compare
    raw, bronze and silver for its sessions) never see rows another run landed half-way."""
    for run in active_runs(instance):
        if run_touches(run, DAILY_WRITERS):
            return f"run {run.run_id} ({run.status.value.lower()})"
    backfills = active_backfills_touching(instance, DAILY_WRITERS)
    return f"backfill {backfills[0]}" if backfills else None


# -- the warehouse from the daemon ---------------------------------------------------------------
def not_quiet(instance: dg.DagsterInstance, database: str) -> dg.SkipReason | None:
    """Why a sensor that reads the warehouse should not look now: no warehouse yet, or a run in
    progress (it may be writing what the sensor checks, and a read-only connection from the
    daemon must not make one of its steps meet a locked file). None when it may look."""
    if database != ":memory:" and not Path(database).is_file():
        return dg.SkipReason("no warehouse yet")
    busy = active_runs(instance)
    if busy:
        return dg.SkipReason(
            f"run {busy[0].run_id} is {busy[0].status.value.lower()}; checking when no run is "
            "in progress"
        )
    return None


class WarehouseBusy(RuntimeError):
    """Another process holds the DuckDB file (a run is writing); try again on a later tick."""


@contextmanager
def warehouse_connection(
    database: str, *, read_only: bool, attempts: int = 4, wait_seconds: float = 0.25
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short-lived DuckDB connection for a sensor. DuckDB allows one writing process per file,
    so a run holding it makes the open fail: retried a few times, then `WarehouseBusy`."""
    if database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    wait = wait_seconds * attempts * (attempts + 1) / 2
    try:
        with (
            warehouse_lock(database, timeout_seconds=wait, what="sensor query"),
            _connect(database, read_only, attempts, wait_seconds) as con,
        ):
            yield con
    except WarehouseLockTimeout as exc:
        raise WarehouseBusy(str(exc)) from exc


@contextmanager
def _connect(
    database: str, read_only: bool, attempts: int, wait_seconds: float
) -> Iterator[duckdb.DuckDBPyConnection]:
    last: Exception | None = None
    for attempt in range(attempts):
        try:
            con = duckdb.connect(database, read_only=read_only)
            break
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            last = exc
            time.sleep(wait_seconds * (attempt + 1))
    else:
        raise WarehouseBusy(f"the warehouse is in use by another process ({last})")
    try:
        con.execute("SET TimeZone = 'UTC'")
        yield con
    finally:
        con.close()


def latest_closed(now: dt.datetime) -> dt.date | None:
    return xnys().latest_closed_session(now)
