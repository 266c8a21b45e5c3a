"""File-drop claims: atomic rename, stale claims put back, a size cap, parse once while waiting."""

from __future__ import annotations

import dataclasses

import dagster as dg
import pytest

from marketflow_assets.automation import file_drops
from marketflow_assets.ingestion.landing import (
    claim,
    claimed_batches,
    dropped_keys,
    unplanned_claims,
)
from marketflow_assets.resources import TICKERS_TAG
from marketflow_assets.storage.object_store import LocalObjectStore
from marketflow_tests.automation_support import add_run, at, et, tick_sensor
from marketflow_tests.helpers import deployment_event_log_instance
from marketflow_tests.test_automation_file_drops import yahoo_csv

SENSOR = "file_drops"


@pytest.fixture
def instance():
    with deployment_event_log_instance() as instance:
        yield instance


@pytest.fixture
def friday(settings):
    return at(dataclasses.replace(settings, tickers="AAPL,KO"), et(2024, 6, 7, 18, 0))


def landing(settings):
    path = settings.home / "landing"
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_a_same_name_re_upload_during_a_claim_is_kept_for_the_next_batch(
    friday, instance, monkeypatch
):
    first, second = yahoo_csv(base=100.0), yahoo_csv(base=300.0)
    (landing(friday) / "MSFT.csv").write_text(first)
    real_get = LocalObjectStore.get
    uploaded = []

    def get_then_reupload(self, key):
        data = real_get(self, key)
        if key.endswith("MSFT.csv") and not uploaded:  # the vendor re-sends while we move
            uploaded.append(key)
            (landing(friday) / "MSFT.csv").write_text(second)
        return data

    monkeypatch.setattr(LocalObjectStore, "get", get_then_reupload)
    one = tick_sensor(friday, SENSOR, instance)
    two = tick_sensor(friday, SENSOR, instance, one.cursor)
    batches = [r.tags[file_drops.FILE_BATCH_TAG] for r in (*one.run_requests, *two.run_requests)]
    assert len(batches) == 2
    contents = [(landing(friday) / "claimed" / b / "MSFT.csv").read_text() for b in batches]
    assert contents == [first, second]  # neither version lost, each in its own batch


def test_a_claim_without_plan_goes_back_to_landing_once_stale(friday, instance, monkeypatch):
    store = LocalObjectStore(friday.home)
    (landing(friday) / "KO.csv").write_text(yahoo_csv())
    (landing(friday) / "AAPL.csv").write_text(yahoo_csv(base=50.0))
    batch = "20240607T220000000000Z-deadbeef"
    for key in ("landing/KO.csv", "landing/AAPL.csv"):
        assert claim(store, key, batch)

    monkeypatch.setattr(file_drops, "STALE_CLAIM_SECONDS", 10**12)  # still fresh: left alone
    fresh = tick_sensor(friday, SENSOR, instance)
    assert not fresh.run_requests and batch in unplanned_claims(store)

    (landing(friday) / "KO.csv").write_text(yahoo_csv(base=70.0))  # dropped again meanwhile
    monkeypatch.setattr(file_drops, "STALE_CLAIM_SECONDS", 0)
    stale = tick_sensor(friday, SENSOR, instance, fresh.cursor)
    assert unplanned_claims(store) == {}
    (request,) = stale.run_requests
    assert request.tags[TICKERS_TAG] == "AAPL,KO"
    plan = claimed_batches(store)[request.tags[file_drops.FILE_BATCH_TAG]]
    # the claimed KO.csv came back beside the newer drop of the same name, not over it
    assert sorted(f["file"] for f in plan["files"]) == [
        "AAPL.csv",
        "KO.csv",
        f"recovered-{batch}/KO.csv",
    ]


def test_a_file_over_the_size_cap_is_rejected_unread(friday, instance, monkeypatch):
    monkeypatch.setattr(file_drops, "MAX_DROP_BYTES", 100)
    (landing(friday) / "MSFT.csv").write_text(yahoo_csv())  # a few hundred bytes
    read = []
    monkeypatch.setattr(
        LocalObjectStore, "get", lambda self, key: read.append(key) or b"", raising=True
    )
    data = tick_sensor(friday, SENSOR, instance)
    assert not data.run_requests and read == []
    (reason,) = (landing(friday) / "rejected").rglob("MSFT.csv.reason.txt")
    assert "over the 100-byte limit" in reason.read_text()


def test_waiting_files_are_parsed_once_until_they_change(friday, instance, monkeypatch):
    parsed = []
    real = file_drops.parse_drop
    monkeypatch.setattr(
        file_drops,
        "parse_drop",
        lambda key, data, today: parsed.append(key) or real(key, data, today=today),
    )
    (landing(friday) / "MSFT.csv").write_text(yahoo_csv())
    busy = add_run(instance, {}, asset_selection=[dg.AssetKey(["raw", "daily_bars"])])
    cursor = None
    for _ in range(3):
        data = tick_sensor(friday, SENSOR, instance, cursor)
        cursor = data.cursor
        assert not data.run_requests and "wait" in data.skip_message
    assert parsed == ["landing/MSFT.csv"]
    (landing(friday) / "MSFT.csv").write_text(yahoo_csv(base=120.0) + "\n")  # changed
    tick_sensor(friday, SENSOR, instance, cursor)
    assert parsed == ["landing/MSFT.csv"] * 2
    instance.delete_run(busy)
    assert dropped_keys(LocalObjectStore(friday.home)) == ["landing/MSFT.csv"]
