"""Raw landing: one code path for a local folder and S3 (moto's real HTTP endpoint)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json

import boto3
import pandas as pd
import pytest
from dagster_aws.s3 import S3Resource
from moto.server import ThreadedMotoServer

from marketflow_assets.storage.object_store import LocalObjectStore, S3ObjectStore
from marketflow_assets.storage.raw_lake import RawLake
from marketflow_tests.helpers import materialize, output_metadata, table

BUCKET = "marketflow-raw"


@pytest.fixture(scope="module")
def s3_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_endpoint, monkeypatch):
    for name, value in {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    yield client
    for obj in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=obj["Key"])
    client.delete_bucket(Bucket=BUCKET)


def land_sample(raw: RawLake):
    frame = pd.DataFrame(
        {
            "Ticker": ["A", "A", "B"],
            "Date": ["2024-06-03", "2024-06-04", "2024-06-03"],
            "Close": [1.0, 2.0, 3.0],
        }
    )
    return raw.land_frame(
        source="simulator",
        dataset="daily_bars",
        frame=frame,
        partitions=frame["Date"],
        request={"tickers": ["A", "B"]},
        tickers={"A": {"status": "ok", "rows": 2}, "B": {"status": "ok", "rows": 1}},
        fetched_at=dt.datetime(2024, 6, 7, 22, tzinfo=dt.UTC),
        run_id="run-1",
    )


def check_landing(raw: RawLake, store):
    manifest = land_sample(raw)
    assert [o.partition for o in manifest.objects] == ["2024-06-03", "2024-06-04"]
    assert (
        manifest.objects[0].key
        == f"raw/simulator/daily_bars/date=2024-06-03/{manifest.fetch_id}.parquet"
    )
    for obj in manifest.objects:
        data = store.get(obj.key)
        assert hashlib.sha256(data).hexdigest() == obj.sha256 and len(data) == obj.bytes
        assert raw.verify(obj) is None
    stored = json.loads(store.get(raw.manifest_key("simulator", "daily_bars", manifest.fetch_id)))
    assert stored["objects"][0]["sha256"] == manifest.objects[0].sha256
    # A fresh reader (no cache) sees the committed fetch and its rows with lineage.
    reader = RawLake(store)
    frames = reader.read_frames(reader.manifests("simulator", "daily_bars"), {"2024-06-03"})
    assert sorted(frames["Ticker"]) == ["A", "B"]
    assert set(frames["_fetch_id"]) == {manifest.fetch_id}
    # Tampering is detected.
    store.put(manifest.objects[0].key, b"not parquet")
    assert "size" in raw.verify(manifest.objects[0]) or "sha256" in raw.verify(manifest.objects[0])


def test_local_lake(tmp_path):
    store = LocalObjectStore(tmp_path)
    check_landing(RawLake(store), store)
    assert not list(tmp_path.rglob(".tmp-*"))  # atomic writes leave no temporaries


def test_s3_lake_through_dagster_aws(s3_env):
    store = S3ObjectStore(S3Resource().get_client(), BUCKET, "team/marketflow")
    check_landing(RawLake(store), store)
    keys = [o["Key"] for o in s3_env.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert all(k.startswith("team/marketflow/raw/simulator/daily_bars/") for k in keys)


def test_each_row_carries_the_lineage_of_its_own_object(tmp_path):
    """Two fetches (one typing Close as text, like a CSV drop) read together: every row names
    its own source, fetch, provider clock and object, and the schemas are combined."""
    raw = RawLake(LocalObjectStore(tmp_path))
    first = land_sample(raw)
    text = pd.DataFrame({"Ticker": ["C"] * 3, "Date": ["2024-06-04"] * 2 + ["2024-06-05"]})
    second = raw.land_frame(
        source="file",
        dataset="daily_bars",
        frame=text.assign(Close=["4", "5", "6"]),
        partitions=text["Date"],
        request={},
        tickers={"C": {"status": "ok", "rows": 3}},
        fetched_at=dt.datetime(2024, 6, 8, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        run_id="run-2",
    )
    frames = raw.read_frames([first, second], {"2024-06-03", "2024-06-04", "2024-06-05"})
    assert len(frames) == 6
    by_key = {o.key: (m, o) for m in (first, second) for o in m.objects}
    for row in frames.to_dict("records"):
        manifest, obj = by_key[row["_object_key"]]
        assert (row["_source"], row["_fetch_id"]) == (manifest.source, manifest.fetch_id)
        assert row["_fetched_at"] == pd.Timestamp(manifest.fetched_at)
        assert f"date={row['Date']}/" in obj.key
    assert str(frames["_fetched_at"].dtype) == "datetime64[us, UTC]"
    assert frames.loc[frames["_source"] == "file", "_fetched_at"].iloc[0] == pd.Timestamp(
        "2024-06-08 07:30", tz="UTC"
    )


def test_objects_without_a_manifest_are_invisible(tmp_path):
    """A fetch that died before committing its manifest leaves nothing readers can see."""
    store = LocalObjectStore(tmp_path)
    store.put("raw/simulator/daily_bars/date=2024-06-03/orphan.parquet", b"half a fetch")
    raw = RawLake(store)
    assert raw.manifests("simulator", "daily_bars") == []
    assert raw.read_frames([], None).empty


def test_pipeline_lands_raw_in_s3_and_builds_silver(settings, s3_env):
    on_s3 = dataclasses.replace(settings, s3_bucket=BUCKET, s3_prefix="mf")
    result = materialize(
        on_s3,
        select=[
            "raw/daily_bars",
            "bronze/daily_bars",
            "silver/corporate_actions",
            "silver/daily_bars",
        ],
        partition_range=("2024-06-03", "2024-06-07"),
    )
    meta = output_metadata(result, ["raw", "daily_bars"])
    assert meta["lake"] == f"s3://{BUCKET}/mf"
    assert all(
        uri.startswith(f"s3://{BUCKET}/mf/raw/simulator/daily_bars/_manifests/")
        for uri in meta["manifests"]
    )
    assert len(table(on_s3, "silver.daily_bars")) == 25
    assert not on_s3.lake_root.exists()  # nothing went to the local lake
