"""After a single-run range backfill, the UI tells the truth per session: every session of every
session-partitioned asset shows as materialized, every session of every partitioned check shows
the verdict that covered it (failed on the sessions with planted failures, with their rows;
passed elsewhere), and no check execution is left PLANNED.

Read through Dagster's GraphQL API exactly as the UI's partition and check views query it
(`assetPartitionStatuses`, `assetChecksOrError { partitionStatuses }`, `assetCheckExecutions`),
on an instance configured with the repository's `dagster.yaml`.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.test_utils import in_process_test_workspace
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster_graphql.test.utils import execute_dagster_graphql

from marketflow_assets.calendar import xnys
from marketflow_assets.definitions import build_definitions
from marketflow_tests.checks_support import DAILY, SILVER, execute, run_checks
from marketflow_tests.helpers import make_settings, materialize

REPO = Path(__file__).resolve().parents[1]
RANGE = ("2024-05-22", "2024-06-04")  # 9 sessions (Memorial Day is a holiday)
PLANTED = {"2024-05-23": 1, "2024-05-30": 2}  # session -> bars made inconsistent (high < low)
SESSION_ASSETS = [
    "raw/daily_bars",
    "bronze/daily_bars",
    "silver/daily_bars",
    "silver/rejected_bars",
]

ASSET_VIEW = """
query ($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode {
      assetPartitionStatuses {
        __typename
        ... on TimePartitionStatuses { ranges { status startKey endKey } }
      }
      assetChecksOrError {
        __typename
        ... on AssetChecks {
          checks {
            name
            partitionStatuses {
              __typename
              ... on AssetCheckTimePartitionStatuses { ranges { status startKey endKey } }
            }
          }
        }
      }
    }
  }
}
"""

SESSION_EXECUTIONS = """
query ($key: AssetKeyInput!, $check: String!, $partition: String) {
  assetCheckExecutions(assetKey: $key, checkName: $check, partition: $partition, limit: 5) {
    status
    partition
    evaluation {
      success
      description
      metadataEntries {
        label
        ... on IntMetadataEntry { intValue }
        ... on MarkdownMetadataEntry { mdStr }
      }
    }
  }
}
"""


def _sessions() -> list[str]:
    first, last = (dt.date.fromisoformat(d) for d in RANGE)
    return [s.isoformat() for s in xnys().sessions_in_range(first, last)]


def _expand(ranges: list[dict]) -> dict[str, str]:
    """{session: status} from the UI's run-length ranges, limited to the test's range."""
    sessions = _sessions()
    out = {}
    for r in ranges:
        for s in sessions:
            if r["startKey"] <= s <= r["endKey"]:
                out[s] = r["status"]
    return out


def _view(context, asset: str) -> dict:
    result = execute_dagster_graphql(context, ASSET_VIEW, {"key": {"path": asset.split("/")}})
    assert not result.errors, result.errors
    return result.data["assetNodeOrError"]


@pytest.fixture
def repo_instance(isolated_dagster_home, monkeypatch):
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "5000")  # as the Makefile exports it
    shutil.copy(REPO / "dagster.yaml", Path(isolated_dagster_home) / "dagster.yaml")
    with dg.DagsterInstance.get() as instance:
        yield instance


@pytest.mark.slow
def test_range_run_reports_every_session_truthfully_in_the_ui(tmp_path, repo_instance):
    settings = make_settings(tmp_path / "home")
    built = materialize(settings, select=DAILY, partition_range=RANGE, instance=repo_instance)
    assert built.success
    # Plant inconsistent bars (high below low) on two sessions, then check the range again, as
    # "Execute checks" over the range does.
    for session, n in PLANTED.items():
        execute(
            settings,
            f"UPDATE silver.daily_bars SET high = low * 0.5 WHERE session_date = DATE '{session}' "
            f"AND ticker IN (SELECT ticker FROM silver.daily_bars WHERE session_date = "
            f"DATE '{session}' ORDER BY ticker LIMIT {n})",
        )
    checked = run_checks(settings, SILVER, partition_range=RANGE, instance=repo_instance)
    assert not checked.success  # ohlc_consistency is blocking ERROR: the step fails, visibly

    sessions = _sessions()
    assert len(sessions) == 9
    origin = LoadableTargetOrigin(module_name="marketflow_assets.definitions")
    with in_process_test_workspace(repo_instance, origin) as context:
        for asset in SESSION_ASSETS:
            view = _view(context, asset)
            statuses = view["assetPartitionStatuses"]
            assert statuses["__typename"] == "TimePartitionStatuses", (asset, statuses)
            assert _expand(statuses["ranges"]) == dict.fromkeys(sessions, "MATERIALIZED"), asset

        checks = {
            c["name"]: c
            for c in _view(context, "silver/daily_bars")["assetChecksOrError"]["checks"]
        }
        expected = {s: "FAILED" if s in PLANTED else "SUCCEEDED" for s in sessions}
        for name in ("ohlc_consistency", "contract"):  # high < low breaks both
            assert _expand(checks[name]["partitionStatuses"]["ranges"]) == expected, name
        for name in ("keys", "row_reconciliation", "completeness"):
            assert set(_expand(checks[name]["partitionStatuses"]["ranges"]).values()) == {
                "SUCCEEDED"
            }, name

        for session, n in PLANTED.items():
            latest = _latest_ohlc_execution(context, session)
            assert latest["status"] == "FAILED" and latest["partition"] == session
            entries = {e["label"]: e for e in latest["evaluation"]["metadataEntries"]}
            assert entries["failing_rows"]["intValue"] == n
            assert session in entries["sample"]["mdStr"]
            assert f"{n} failing row(s) on {session}" in latest["evaluation"]["description"]

        # A passing session shows the range verdict that covered it (stored as a slim copy per
        # session, `instance/slim_json.py`), read back whole.
        passing = next(s for s in sessions if s not in PLANTED)
        latest = _latest_ohlc_execution(context, passing)
        assert latest["status"] == "SUCCEEDED" and latest["partition"] == passing
        assert latest["evaluation"]["success"] is True
        others = len(sessions) - len(PLANTED)
        assert (
            f"no failing rows on the {others} other session(s)"
            in (latest["evaluation"]["description"])
        )
        entries = {e["label"]: e for e in latest["evaluation"]["metadataEntries"]}
        assert entries["failing_rows"]["intValue"] == 0

    # Nothing is left PLANNED, for any check of any asset the runs touched.
    for key in build_definitions(settings).resolve_asset_graph().asset_check_keys:
        planned = repo_instance.event_log_storage.get_asset_check_execution_history(
            key, limit=1, status={AssetCheckExecutionRecordStatus.PLANNED}
        )
        assert planned == [], key

    # Every session's verdict, passed or failed, targets that session's own latest
    # materialization: the UI calls it current, not outdated.
    asset = dg.AssetKey(["silver", "daily_bars"])
    keys = [dg.AssetCheckKey(asset, name) for name in ("ohlc_consistency", "keys")]
    infos = repo_instance.event_log_storage.get_asset_check_partition_info(
        keys, partition_keys=sessions
    )
    assert len(infos) == len(keys) * len(sessions)
    for info in infos:
        assert info.latest_target_materialization_storage_id is not None, info
        assert (
            info.latest_target_materialization_storage_id == info.latest_materialization_storage_id
        ), info


def _latest_ohlc_execution(context, session: str) -> dict:
    """The latest execution of silver/daily_bars' ohlc_consistency check on `session`, as the
    UI's check page for that partition queries it."""
    result = execute_dagster_graphql(
        context,
        SESSION_EXECUTIONS,
        {
            "key": {"path": ["silver", "daily_bars"]},
            "check": "ohlc_consistency",
            "partition": session,
        },
    )
    assert not result.errors, result.errors
    return result.data["assetCheckExecutions"][0]
