"""End to end through a real deployment: dagster-webserver + dagster-daemon on loopback, a
partition backfill launched with the GraphQL mutation the UI uses, data found in the warehouse.

The deployment runs with its automation on (the RUNNING-by-default sensors tick meanwhile: the
catch-up sees nothing materialized, the universe sensor records its baseline ...), so the test
also shows they do not get in the way of a backfill.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import duckdb
import pytest

from marketflow_tests.helpers import FRIDAY_EVENING

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SESSIONS = ["2024-06-05", "2024-06-06", "2024-06-07"]
TICKERS = "AAPL,KO"
# The daily path's session-partitioned assets: one single-run backfill, one run.
BACKFILL_ASSETS = [
    ["raw", "daily_bars"],
    ["bronze", "daily_bars"],
    ["silver", "daily_bars"],
    ["silver", "rejected_bars"],
    ["silver", "bar_repairs"],  # one validation with daily and rejected bars (as the UI selects)
    ["gold", "daily_features"],
    ["gold", "ma_crossovers"],
    ["gold", "monthly_returns"],
]
# About 50 s alone on 2 cores (webserver load ~6 s, one backfill daemon iteration to start the
# run, the run ~16 s, the next iteration 30 s later marks the backfill done). The deadline leaves
# room for a loaded CI machine (`make test` runs two test workers) without hanging forever: 150 s
# ran out once at load average 10 on the shared 2-core machine (the run took 48 s and succeeded;
# the backfill was marked done one iteration later).
DEADLINE_SECONDS = 240

LOCATION_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""
AUTOMATION_QUERY = """
{ workspaceOrError { ... on Workspace { locationEntries { locationOrLoadError {
    ... on RepositoryLocation { repositories {
        schedules { name description scheduleState { status } }
        sensors { name description sensorState { status } } } } } } } } }
"""
EXPECTED_AUTOMATION = {
    "daily_close": "RUNNING",
    "daily_catch_up": "RUNNING",
    "intraday_poll": "STOPPED",  # polls the provider every few minutes: opt-in
    "universe_changes": "RUNNING",
    "corporate_action_rebuilds": "RUNNING",
    "file_drops": "RUNNING",
    "late_fact_rebuilds": "RUNNING",
    "run_failure_alerts": "RUNNING",
    "check_failure_alerts": "RUNNING",
}
LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
  }
}
"""
BACKFILL_STATUS = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { id status }
    ... on PythonError { message }
  }
}
"""
BACKFILL_RUNS = """
query Runs($id: String!) {
  runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) {
    ... on Runs { results { runId status tags { key value } } }
  }
}
"""
DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        body = json.loads(response.read())
    assert "errors" not in body, body["errors"]
    return body["data"]


def wait_for(what: str, probe, deadline: float, logs: Path, interval: float = 1.0):
    while time.monotonic() < deadline:
        try:
            result = probe()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            result = None
        if result:
            return result
        time.sleep(interval)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(logs.glob("*.log")))
    pytest.fail(f"timed out waiting for {what}\n{tails}")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the process group we started (the daemon's code server and run workers too)."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
    except ProcessLookupError:
        pass


@pytest.mark.slow
def test_ui_backfill_through_webserver_and_daemon_lands_in_the_warehouse(tmp_path):
    started = time.monotonic()
    deadline = started + DEADLINE_SECONDS
    home, dagster_home, logs = tmp_path / "home", tmp_path / "dagster_home", tmp_path / "logs"
    for folder in (home, dagster_home, logs):
        folder.mkdir()
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    env = {
        # The developer's MARKETFLOW_* settings (S3, Slack, warehouse ...) stay out.
        **{k: v for k, v in os.environ.items() if not k.startswith("MARKETFLOW_")},
        "DAGSTER_HOME": str(dagster_home),
        "DAGSTER_DISABLE_TELEMETRY": "true",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "MARKETFLOW_HOME": str(home),
        "MARKETFLOW_SOURCE": "simulator",
        "MARKETFLOW_SIMULATOR_NOW": FRIDAY_EVENING.isoformat(),
        "MARKETFLOW_TICKERS": TICKERS,
    }
    port = free_port()
    commands = {
        "webserver": [
            str(BIN / "dagster-webserver"),
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        "daemon": [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
    }
    processes = []

    def start(name: str) -> None:
        with (logs / f"{name}.log").open("w") as log:
            processes.append(
                subprocess.Popen(
                    commands[name],
                    cwd=REPO,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: stop() ends all of it
                )
            )

    try:
        start("webserver")

        def location_loaded():
            entries = graphql(port, LOCATION_QUERY)["workspaceOrError"]["locationEntries"]
            entry = entries[0] if entries else None
            if entry and entry["loadStatus"] == "LOADED":
                assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation", entry
                return True
            return False

        wait_for("the code location to load in the webserver", location_loaded, deadline, logs)
        # The UI's Automation page lists every schedule and sensor, described, with its status.
        location = graphql(port, AUTOMATION_QUERY)["workspaceOrError"]["locationEntries"][0]
        (repository,) = location["locationOrLoadError"]["repositories"]
        listed = {
            **{s["name"]: s for s in repository["schedules"]},
            **{s["name"]: s for s in repository["sensors"]},
        }
        statuses = {
            name: (item.get("scheduleState") or item.get("sensorState"))["status"]
            for name, item in listed.items()
        }
        assert statuses == EXPECTED_AUTOMATION
        assert all(item["description"] for item in listed.values())
        launched = graphql(
            port,
            LAUNCH_BACKFILL,
            {
                "params": {
                    "partitionNames": SESSIONS,
                    "assetSelection": [{"path": path} for path in BACKFILL_ASSETS],
                    "fromFailure": False,
                    "title": "e2e: 3 sessions of the daily path",
                }
            },
        )["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill_id = launched["backfillId"]
        # The daemon's backfill loop ticks every 30 s from its start: started now, its first
        # iteration picks the backfill up at once (saves up to 30 s of test time).
        start("daemon")

        def finished():
            status = graphql(port, BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
            return status["status"] if status["status"] in DONE else None

        status = wait_for(f"backfill {backfill_id}", finished, deadline, logs, interval=2.0)
        runs = graphql(port, BACKFILL_RUNS, {"id": backfill_id})["runsOrError"]["results"]
        assert status == "COMPLETED_SUCCESS", (status, runs)
        # BackfillPolicy.single_run: the three sessions are ONE run over the range.
        (run,) = runs
        assert run["status"] == "SUCCESS"
        tags = {t["key"]: t["value"] for t in run["tags"]}
        assert tags["dagster/asset_partition_range_start"] == SESSIONS[0]
        assert tags["dagster/asset_partition_range_end"] == SESSIONS[-1]

    finally:
        for process in reversed(processes):
            stop(process)

    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        silver = con.execute(
            "SELECT ticker, count(*), min(session_date)::VARCHAR, max(session_date)::VARCHAR "
            "FROM silver.daily_bars GROUP BY 1 ORDER BY 1"
        ).fetchall()
        gold = con.execute("SELECT count(*) FROM gold.daily_features").fetchone()[0]
        sources = con.execute("SELECT DISTINCT ticker, source FROM silver.daily_bars").fetchall()
    finally:
        con.close()
    assert silver == [(t, 3, SESSIONS[0], SESSIONS[-1]) for t in TICKERS.split(",")]
    assert gold == 6
    assert sorted(sources) == [("AAPL", "simulator"), ("KO", "simulator")]
