"""Hostile and broken files: a link never makes the platform read, move or delete its target;
one unreadable file (batch plan, alert row, manifest) is set aside with a log naming it and
the rest of the path goes on; local writes are atomic and durable."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from marketflow_assets.automation.alerts import flush_outbox
from marketflow_assets.definitions import build_definitions
from marketflow_assets.ingestion.landing import BATCH_PLAN, CLAIMED, REJECTED
from marketflow_assets.storage import atomic
from marketflow_assets.storage.object_store import LocalObjectStore, UnsafeObjectError
from marketflow_assets.storage.raw_lake import RawLake
from marketflow_tests.automation_support import tick_sensor
from marketflow_tests.helpers import deployment_event_log_instance, materialize, query
from marketflow_tests.test_automation_file_drops import yahoo_csv


@pytest.fixture
def instance():
    with deployment_event_log_instance() as instance:
        yield instance


def rejected_reasons(home: Path) -> dict[str, str]:
    """Rejected file name -> reason text, over every rejection stamp."""
    return {
        p.name.removesuffix(".reason.txt"): p.read_text()
        for p in (home / REJECTED).rglob("*.reason.txt")
    }


# -- links ---------------------------------------------------------------------------------------
def test_object_store_never_follows_a_link(tmp_path):
    root, outside = tmp_path / "store", tmp_path / "outside"
    (root / "a").mkdir(parents=True)
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text("do not read")
    (root / "a" / "link.csv").symlink_to(secret)
    (root / "a" / "dir").symlink_to(outside, target_is_directory=True)
    (root / "a" / "hard.csv").hardlink_to(secret)
    store = LocalObjectStore(root, refuse_hard_links=True)

    # Listed (so a watcher can reject them), never descended into.
    assert store.list("a/") == ["a/dir", "a/hard.csv", "a/link.csv"]
    for key in ("a/link.csv", "a/dir", "a/hard.csv"):
        with pytest.raises(UnsafeObjectError, match=key):
            store.get(key)
    with pytest.raises(UnsafeObjectError, match="symbolic link"):
        store.get("a/dir/secret.txt")
    with pytest.raises(UnsafeObjectError, match="symbolic link"):
        store.put("a/dir/new.txt", b"x")
    with pytest.raises(ValueError, match="escapes"):
        store.get("../outside/secret.txt")
    # Deleting removes the names, never the file they point to.
    for key in ("a/link.csv", "a/dir", "a/hard.csv"):
        store.delete(key)
    assert secret.read_text() == "do not read" and [p.name for p in outside.iterdir()] == [
        "secret.txt"
    ]
    assert store.list("a/") == []
    # The lake (hard links allowed: cp -al snapshots) still reads a hard-linked object.
    (root / "b").mkdir()
    (root / "b" / "obj").hardlink_to(secret)
    assert LocalObjectStore(root).get("b/obj") == b"do not read"


def test_links_dropped_in_landing_are_rejected_and_their_targets_survive(settings, instance):
    # Something worth protecting in the lake and the warehouse.
    materialize(settings, select=["raw/daily_bars", "bronze/daily_bars"], partition="2024-06-03")
    manifest = next((settings.lake_root / "raw").rglob("_manifests/*.json"))
    manifest_bytes = manifest.read_bytes()
    warehouse_bytes = settings.warehouse.read_bytes()
    outside = settings.home.parent / "outside.csv"  # outside MARKETFLOW_HOME
    outside.write_text(yahoo_csv())

    landing = settings.home / "landing"
    landing.mkdir()
    (landing / "AAPL.csv").symlink_to(manifest)
    (landing / "MSFT.csv").symlink_to(settings.warehouse)
    (landing / "KO.csv").symlink_to(outside)
    (landing / "TSLA.csv").symlink_to(settings.home / "missing.csv")  # dangling
    (landing / "sub").symlink_to(settings.lake_root, target_is_directory=True)
    (landing / "NVDA.csv").hardlink_to(outside)
    (landing / "GOOD.csv").write_text(yahoo_csv())

    result = tick_sensor(settings, "file_drops", instance)

    # The readable file goes on to a run; every link is rejected with a reason naming it.
    (request,) = result.run_requests
    assert request.tags["marketflow/tickers"] == "GOOD"
    reasons = rejected_reasons(settings.home)
    assert set(reasons) == {"AAPL.csv", "MSFT.csv", "KO.csv", "TSLA.csv", "sub", "NVDA.csv"}
    for name in ("AAPL.csv", "MSFT.csv", "KO.csv", "TSLA.csv", "sub"):
        assert f"landing/{name} is a symbolic link" in reasons[name]
    assert "hard link" in reasons["NVDA.csv"]
    # The rejected folder holds reasons only: no target's bytes were copied.
    assert not [
        p for p in (settings.home / REJECTED).rglob("*") if p.is_file() and "reason" not in p.name
    ]
    # Targets are untouched, the links are gone.
    assert manifest.read_bytes() == manifest_bytes
    assert settings.warehouse.read_bytes() == warehouse_bytes
    assert outside.read_text() == yahoo_csv() and outside.stat().st_nlink == 1
    assert sorted(p.name for p in landing.iterdir()) == ["claimed", "rejected"]
    # And the next tick has nothing left to trip on.
    assert tick_sensor(settings, "file_drops", instance, result.cursor).run_requests == []


# -- one bad file does not stop a path -----------------------------------------------------------
def test_an_unreadable_batch_plan_returns_its_files_and_other_batches_go_on(settings, instance):
    landing = settings.home / "landing"
    broken = landing / "claimed" / "20240607T000000Z-broken"
    broken.mkdir(parents=True)
    (broken / BATCH_PLAN).write_text('{"batch": "20240607T00')  # truncated by a crash
    (broken / "MSFT.csv").write_text(yahoo_csv())
    good = landing / "claimed" / "20240607T000001Z-good"
    good.mkdir(parents=True)
    plan = {"batch": good.name, "start": "2024-06-03", "end": "2024-06-07", "tickers": ["KO"]}
    (good / BATCH_PLAN).write_text(json.dumps(plan))
    (good / "KO.csv").write_text(yahoo_csv())

    result = tick_sensor(settings, "file_drops", instance)

    batches = sorted(r.tags["marketflow/file_batch"] for r in result.run_requests)
    assert len(batches) == 2 and good.name in batches  # the good batch is re-requested ...
    # ... and the broken batch's file was returned to landing/ and claimed again, anew.
    (fresh,) = [b for b in batches if b != good.name]
    assert (landing / "claimed" / fresh / "MSFT.csv").read_text() == yahoo_csv()
    assert not broken.exists() or not any(broken.iterdir())
    reasons = rejected_reasons(settings.home)
    assert "unreadable batch plan" in reasons[BATCH_PLAN]
    assert f"{CLAIMED}{broken.name}/{BATCH_PLAN}" in reasons[BATCH_PLAN]


def test_an_unreadable_alert_row_is_quarantined_and_the_others_written(settings, caplog):
    resources = build_definitions(settings).resources
    outbox = settings.home / "alerts" / "outbox"
    outbox.mkdir(parents=True)
    (outbox / "truncated.json").write_text('{"alert_id": "a1", "kind": "run_fai')
    (outbox / "foreign.json").write_text("[1, 2, 3]")
    row = {
        "alert_id": "good-1",
        "kind": "run_failure",
        "severity": "ERROR",
        "title": "Run failed",
        "detail": "boom",
        "created_at": "2024-06-07T22:00:00+00:00",
    }
    (outbox / "good-1.json").write_text(json.dumps(row))
    logger = logging.getLogger("test_outbox")
    with caplog.at_level(logging.WARNING, logger="test_outbox"):
        written = flush_outbox(resources["alerting"], resources["warehouse"], logger)
    assert written == 1
    assert query(settings, "SELECT alert_id FROM ops.alert_history")["alert_id"].tolist() == [
        "good-1"
    ]
    quarantine = settings.home / "alerts" / "quarantine"
    assert sorted(p.name for p in quarantine.iterdir()) == ["foreign.json", "truncated.json"]
    assert not list(outbox.iterdir())
    logged = caplog.text
    assert "truncated.json" in logged and "foreign.json" in logged


def test_an_unreadable_manifest_is_skipped_and_the_dataset_still_reads(settings, caplog):
    materialize(settings, select=["raw/daily_bars"], partition="2024-06-03")
    manifests = next((settings.lake_root / "raw").rglob("_manifests"))
    (manifests / "empty.json").write_text("")
    (manifests / "foreign.json").write_text('{"hello": "world"}')
    (manifests / "truncated.json").write_text('{"fetch_id": "x", "sour')

    with caplog.at_level(logging.WARNING):
        lake = RawLake(LocalObjectStore(settings.lake_root))
        found = lake.manifests("simulator", "daily_bars")
    assert len(found) == 1
    assert sorted(Path(k).name for k in lake.unreadable_manifests) == [
        "empty.json",
        "foreign.json",
        "truncated.json",
    ]
    assert "empty.json" in caplog.text
    # Planning, bronze and the raw checks read the dataset as before.
    result = materialize(
        settings, select=["raw/daily_bars", "bronze/daily_bars"], partition="2024-06-04"
    )
    assert result.success
    assert query(settings, "SELECT count(*) AS n FROM bronze.daily_bars")["n"][0] > 0
    # ... and the raw integrity check names the skipped files.
    (integrity,) = [
        e for e in result.get_asset_check_evaluations() if e.check_name == "raw_integrity"
    ]
    named = str(integrity.metadata["unreadable_manifests"].value)
    assert all(n in named for n in ("empty.json", "foreign.json", "truncated.json"))


# -- durable writes ------------------------------------------------------------------------------
def test_local_writes_fsync_the_file_and_its_folder(tmp_path, monkeypatch):
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(str(Path(f"/proc/self/fd/{fd}").readlink()))
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", spy)
    store = LocalObjectStore(tmp_path)
    store.put("raw/x/_manifests/m.json", b"{}")
    folder = tmp_path / "raw" / "x" / "_manifests"
    assert synced[-1] == str(folder)  # the folder, after the rename
    assert Path(synced[0]).parent == folder and Path(synced[0]).name.startswith(".tmp-")
    assert (folder / "m.json").read_bytes() == b"{}" and len(list(folder.iterdir())) == 1
