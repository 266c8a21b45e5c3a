"""Crash anywhere, lose nothing: a real child process SIGKILLed at each phase of a run.

After each kill: every warehouse table is either as before the run or complete, the lake shows
only whole fetches (a manifest is the commit), Dagster's run monitoring (with the
liveness-checking launcher of dagster.yaml) fails the dead run and its pool slot is freed, the
sensors' "daily work in progress" clears by itself, and re-running the same work reproduces the
clean build exactly (every bronze, silver and gold table compared). Kill points are deterministic
(`marketflow_assets/faults.py`), not timing. States are built once per module and copied.
"""

from __future__ import annotations

import dagster as dg
import duckdb
import pytest

from marketflow_assets.automation.common import active_runs, daily_work_in_progress, range_tags
from marketflow_assets.faults import fault_point
from marketflow_assets.serving import current_snapshot_path
from marketflow_assets.storage.object_store import LocalObjectStore
from marketflow_assets.storage.raw_lake import RawLake
from marketflow_tests.fault_harness import (
    copy_home,
    differing_tables,
    killed,
    monitor_until_clear,
    pool_holders,
    run_child,
    same_table,
    tables,
    write_instance_yaml,
)
from marketflow_tests.helpers import make_settings, materialize

TICKERS = "AAPL,KO"
BEFORE = ("2024-06-03", "2024-06-05")
WORK = ("2024-06-03", "2024-06-07")  # overlaps what was built before, and adds two sessions
SELECT = [
    "raw/daily_bars",
    "bronze/daily_bars",
    "silver/corporate_actions",
    "silver/daily_bars",
    "silver/rejected_bars",
    "gold/daily_features",
    "gold/ma_crossovers",  # a dbt mart
]
STARTED = dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])

# Batched writes (staged in a scratch file, then swapped in) are the intraday path's.
INTRADAY = ["raw/intraday_bars_1m", "bronze/intraday_bars_1m", "silver/intraday_bars_1m"]

# (MARKETFLOW_FAULT, whether the dead run holds a duckdb_warehouse slot when it dies, the work).
RUN_PHASES = [
    pytest.param("raw.objects_written", False, "daily", id="mid-raw-landing"),
    pytest.param("warehouse.staging", True, "intraday", id="mid-staging"),
    pytest.param("warehouse.replace@2", True, "daily", id="inside-replace-transaction"),
    pytest.param("dbt.build", True, "daily", id="mid-dbt"),
    pytest.param("snapshot.publish", True, "serving", id="mid-snapshot-publish"),
]
WORKS = {"daily": SELECT, "intraday": INTRADAY, "serving": [*SELECT, "serving/snapshot"]}
# The state each work crashes from. The daily work crashes from the serving state (its build also
# published a snapshot, which the daily work neither reads nor changes): the same bronze, silver
# and gold tables before and after, one state build fewer (two runs with dbt).
STATE_OF = {"daily": "serving", "intraday": "intraday", "serving": "serving"}


def build_states(root, select):
    """(settings, dagster home, tables before, tables of the complete build) of a home where
    BEFORE was built; the complete build is WORK on a copy of it, without faults."""
    settings = make_settings(root / "before" / "home", tickers=TICKERS)
    dagster_home = root / "before" / "dagster"
    write_instance_yaml(dagster_home, free_slots_after_run_end_seconds=1)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        materialize(settings, select=select, partition_range=BEFORE, instance=instance)
    reference, reference_dagster = copy_home(settings, dagster_home, root / "complete")
    with dg.DagsterInstance.from_config(str(reference_dagster)) as instance:
        materialize(reference, select=select, partition_range=WORK, instance=instance)
    before, complete = tables(settings), tables(reference)
    assert differing_tables(before, complete), "the work must change the tables"
    return settings, dagster_home, before, complete


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Crash-from states per kind of work, built once per module and copied by each test."""
    states = {}

    def get(work: str):
        state = STATE_OF[work]
        if state not in states:
            states[state] = build_states(tmp_path_factory.mktemp(f"faults-{state}"), WORKS[state])
        return states[state]

    return get


def assert_lake_whole(settings) -> None:
    """Every committed fetch's objects are present and intact (orphans of a dead fetch are not
    listed by any manifest, so nothing reads them)."""
    lake = RawLake(LocalObjectStore(settings.lake_root))
    for dataset in ("daily_bars", "intraday_bars_1m"):
        for manifest in lake.manifests("simulator", dataset):
            for obj in manifest.objects:
                assert lake.verify(obj) is None, (obj.key, lake.verify(obj))


def test_fault_points_are_inert_unless_named(monkeypatch):
    monkeypatch.delenv("MARKETFLOW_FAULT", raising=False)
    fault_point("warehouse.replace")  # would SIGKILL the test process if it were not inert
    monkeypatch.setenv("MARKETFLOW_FAULT", "warehouse.replace@3")
    fault_point("warehouse.replace")
    fault_point("raw.objects_written")


@pytest.mark.slow
@pytest.mark.parametrize("phase, holds_pool, work", RUN_PHASES)
def test_a_run_killed_at_any_phase_loses_nothing_and_leaves_nothing_held(
    built, tmp_path, phase, holds_pool, work
):
    select = WORKS[work]
    source, source_dagster, before, complete = built(work)
    settings, dagster_home = copy_home(source, source_dagster, tmp_path)
    snapshot_before = current_snapshot_path(settings).resolve() if work == "serving" else None

    code, out = run_child(
        settings, dagster_home, {"select": select, "tags": range_tags(*map(_date, WORK))}, phase
    )
    assert killed(code), f"the child was not killed at {phase} (exit {code}):\n{out[-3000:]}"

    # Nothing half-written is visible: each table as before, or complete.
    after_kill = tables(settings)
    for name in sorted(set(complete) | set(after_kill)):
        now = after_kill.get(name)
        assert same_table(now, before.get(name)) or same_table(now, complete.get(name)), name
    assert_lake_whole(settings)
    if snapshot_before is not None:  # readers still get the previous snapshot, whole
        assert current_snapshot_path(settings).resolve() == snapshot_before
        with duckdb.connect(str(current_snapshot_path(settings)), read_only=True) as con:
            assert con.execute("SELECT count(*) FROM serving.manifest").fetchone()[0] > 0

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        (dead,) = instance.get_runs(filters=STARTED)
        # The sensors wait for it: every in-progress check sees it, the daily ones by name.
        assert [run.run_id for run in active_runs(instance)] == [dead.run_id]
        if work == "daily":
            assert dead.run_id in (daily_work_in_progress(instance) or "")
        if holds_pool:
            assert dead.run_id in {run for run, _ in pool_holders(instance)}

        # Dagster's own monitoring loop sees the dead worker, fails the run, frees the slot.
        monitor_until_clear(instance)
        assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.FAILURE
        assert pool_holders(instance) == []
        assert active_runs(instance) == [] and daily_work_in_progress(instance) is None

        # The same work again reproduces the clean build exactly.
        result = materialize(settings, select=select, partition_range=WORK, instance=instance)
        assert result.success
    assert differing_tables(tables(settings), complete) == []
    assert_lake_whole(settings)
    if snapshot_before is not None:  # the re-run published a new snapshot
        assert current_snapshot_path(settings).resolve() != snapshot_before


def _date(text: str):
    import datetime as dt

    return dt.date.fromisoformat(text)


# -- sensors killed mid-way ------------------------------------------------------------------------
@pytest.mark.slow
def test_a_file_drops_tick_killed_mid_claim_gives_the_files_back(tmp_path, monkeypatch):
    from marketflow_assets.automation import file_drops
    from marketflow_assets.ingestion.landing import (
        claimed_batches,
        dropped_keys,
        unplanned_claims,
    )
    from marketflow_assets.resources import TICKERS_TAG
    from marketflow_tests.automation_support import tick_sensor
    from marketflow_tests.test_automation_file_drops import yahoo_csv

    settings = make_settings(tmp_path / "home", tickers=TICKERS)
    dagster_home = tmp_path / "dagster"
    write_instance_yaml(dagster_home)
    landing = settings.home / "landing"
    landing.mkdir(parents=True)
    dropped = {"MSFT.csv": yahoo_csv(), "KO.csv": yahoo_csv(base=60.0)}
    for name, text in dropped.items():
        (landing / name).write_text(text)

    code, out = run_child(
        settings, dagster_home, {"mode": "sensor", "sensor": "file_drops"}, "file_drops.claim"
    )
    assert killed(code), out[-3000:]
    store = LocalObjectStore(settings.home)
    # Claimed (renamed) but no plan: nothing lost, nothing requested.
    (claim,) = unplanned_claims(store).values()
    assert sorted(k.rsplit("/", 1)[1] for k in claim) == sorted(dropped)
    assert dropped_keys(store) == [] and claimed_batches(store) == {}

    # The next tick after the grace period puts the files back and claims them with a plan.
    monkeypatch.setattr(file_drops, "STALE_CLAIM_SECONDS", 0)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        data = tick_sensor(settings, "file_drops", instance)
    (request,) = data.run_requests
    assert request.tags[TICKERS_TAG] == "KO,MSFT"
    assert unplanned_claims(store) == {}
    (batch,) = claimed_batches(store)
    for name, text in dropped.items():
        assert (landing / "claimed" / batch / name).read_text() == text


@pytest.mark.slow
def test_an_alert_killed_after_delivery_is_recorded_once_by_the_next_tick(tmp_path, monkeypatch):
    from marketflow_assets.automation.alerts import Alert, raise_alerts
    from marketflow_assets.resources import build_resources
    from marketflow_tests.helpers import query
    from marketflow_tests.test_automation_alerts import Webhook

    settings = make_settings(tmp_path / "home", tickers=TICKERS, slack_webhook_configured=True)
    dagster_home = tmp_path / "dagster"
    write_instance_yaml(dagster_home)
    alert = {"kind": "run_failure", "severity": "ERROR", "title": "Run failed", "detail": "boom"}
    alert["run_id"] = "0f1e2d3c"
    with Webhook() as hook:
        env = {"MARKETFLOW_SLACK_WEBHOOK_URL": hook.url}
        code, out = run_child(
            settings, dagster_home, {"mode": "alert", "alert": alert}, "alerts.delivered", env
        )
        assert killed(code), out[-3000:]
        assert len(hook.received) == 1  # delivered, then killed before its row was queued
        assert not settings.warehouse.exists()  # no row was written either

        # The sensor's cursor did not move, so its next tick raises the same alert again: it is
        # delivered again (at least once) and recorded once, however often it is raised.
        monkeypatch.setenv("MARKETFLOW_SLACK_WEBHOOK_URL", hook.url)
        resources = build_resources(settings)
        alerting = resources["alerting"].process_config_and_initialize()
        # The warehouse resource tears down (lets go of the warehouse it keeps open): as a
        # sensor gets it, through its context manager.
        with resources["warehouse"].process_config_and_initialize_cm() as warehouse:
            for _ in range(2):
                raise_alerts([Alert(**alert)], alerting, warehouse, _Log())
        assert len(hook.received) == 3
    rows = query(settings, "SELECT alert_id, delivered_to FROM ops.alert_history")
    assert len(rows) == 1 and rows["delivered_to"].iloc[0] == "slack"
    assert list((settings.home / "alerts" / "outbox").glob("*.json")) == []


class _Log:
    def info(self, message):
        pass

    warning = info
