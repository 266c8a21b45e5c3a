"""Raw landing writes a fetch's session objects as one batch: atomic objects made durable by one
barrier before the manifest commits them, and nothing left behind when any of it fails."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pandas as pd
import pytest

from marketflow_assets.sources.base import BarsQuery
from marketflow_assets.sources.simulator import SimulatorSource
from marketflow_assets.storage import atomic, object_store, raw_lake
from marketflow_assets.storage.object_store import LocalObjectStore
from marketflow_assets.storage.raw_lake import RawLake
from marketflow_tests.helpers import land_daily_bars

CLOCK = dt.datetime(2024, 6, 7, 22, tzinfo=dt.UTC)
PREFIX = "raw/simulator/daily_bars/"


def simulator_payload(tickers=("AAA", "BBB", "CCC"), first=dt.date(2024, 5, 20)) -> pd.DataFrame:
    source = SimulatorSource(seed=1, clock=CLOCK)
    return source.fetch_bars(BarsQuery(tickers, first, dt.date(2024, 6, 7), "1d")).frame


def land(raw: RawLake, frame: pd.DataFrame):
    return land_daily_bars(raw, frame, CLOCK)


def assert_same_rows(read: pd.DataFrame, payload: pd.DataFrame) -> None:
    """Equal values and types; the Date zone compared by name (Arrow names it, pandas may hold
    another tzinfo object for the same zone)."""
    read, payload = read.reset_index(drop=True), payload.reset_index(drop=True)
    assert str(read["Date"].dt.tz) == str(payload["Date"].dt.tz)
    pd.testing.assert_frame_equal(
        read.assign(Date=read["Date"].dt.tz_convert("UTC")),
        payload.assign(Date=payload["Date"].dt.tz_convert("UTC")),
        check_exact=True,
    )


class RecordingStore(LocalObjectStore):
    """A local store that records what was put (and how durably) and can fail on demand."""

    def __init__(self, root: Path, *, fail_put_at: int | None = None, fail_sync: bool = False):
        super().__init__(root)
        self.calls: list[tuple[str, str, bool]] = []
        self.fail_put_at, self.fail_sync = fail_put_at, fail_sync
        self.lock = threading.Lock()  # landing puts from several threads

    def put_many(self, items, *, durable: bool = True) -> None:  # `put` comes here too
        def recorded():
            for key, data in items:
                with self.lock:
                    self.calls.append(("put", key, durable))
                    objects = sum(
                        1 for c in self.calls if c[0] == "put" and c[1].endswith(".parquet")
                    )
                if key.endswith(".parquet") and objects == self.fail_put_at:
                    raise OSError(28, "No space left on device", key)
                yield key, data

        super().put_many(recorded(), durable=durable)

    def sync(self) -> None:
        self.calls.append(("sync", "", True))
        if self.fail_sync:
            raise OSError(5, "write-back failed")
        super().sync()


def test_objects_are_made_durable_by_one_barrier_before_the_manifest(tmp_path):
    store = RecordingStore(tmp_path)
    frame = simulator_payload()
    manifest = land(RawLake(store), frame)
    sessions = frame["Date"].nunique()  # 2024-05-20..2024-06-07: 14 (Memorial Day closed)
    assert len(manifest.objects) == sessions == 14
    kinds = [(kind, key.endswith(".json"), durable) for kind, key, durable in store.calls]
    # every session object first (not yet durable), then one barrier, then the durable manifest
    assert kinds == [("put", False, False)] * 14 + [("sync", False, True), ("put", True, True)]
    assert store._unsynced == set()


def test_landed_objects_read_back_as_the_payload(tmp_path):
    """Row values and column types (the exchange-zoned Date included) survive the round trip,
    session by session, and every object lies under its own session's folder."""
    frame = simulator_payload()
    raw = RawLake(LocalObjectStore(tmp_path))
    manifest = land(raw, frame)
    read = RawLake(LocalObjectStore(tmp_path)).read_frames([manifest], None)
    for obj in manifest.objects:
        assert obj.key == f"{PREFIX}date={obj.partition}/{manifest.fetch_id}.parquet"
        rows = read[read["_object_key"] == obj.key].drop(columns=list(raw_lake.LINEAGE_COLUMNS))
        expected = frame[frame["Date"].dt.strftime("%Y-%m-%d") == obj.partition]
        assert_same_rows(rows, expected)


def test_objects_written_before_this_encoding_stay_readable(tmp_path, monkeypatch):
    """Lakes landed with dictionary-encoded objects (before this change) read the same."""
    frame = simulator_payload(tickers=("AAA",))
    raw = RawLake(LocalObjectStore(tmp_path))

    def dictionary_encoded(table):
        import io

        import pyarrow.parquet as pq

        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        return sink.getvalue()

    with monkeypatch.context() as patch:
        patch.setattr(raw_lake, "parquet_bytes", dictionary_encoded)
        old = land(raw, frame)
    new = land(raw, frame)
    assert old.objects[0].sha256 != new.objects[0].sha256  # really two encodings
    both = raw.read_frames([old, new], None)
    by_fetch = [
        both[both["_fetch_id"] == m.fetch_id]
        .drop(columns=list(raw_lake.LINEAGE_COLUMNS))
        .reset_index(drop=True)
        for m in (old, new)
    ]
    pd.testing.assert_frame_equal(by_fetch[0], by_fetch[1], check_exact=True)
    assert_same_rows(by_fetch[1], frame)


@pytest.mark.parametrize("failure", ["object", "sync"])
def test_a_landing_that_fails_midway_leaves_nothing_behind(tmp_path, failure):
    store = RecordingStore(
        tmp_path, fail_put_at=7 if failure == "object" else None, fail_sync=failure == "sync"
    )
    raw = RawLake(store)
    with pytest.raises(OSError):
        land(raw, simulator_payload())
    assert store.list(PREFIX) == []  # no object, no manifest
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # no temporaries either
    assert RawLake(LocalObjectStore(tmp_path)).manifests("simulator", "daily_bars") == []


def test_without_syncfs_each_object_and_folder_is_fsynced(tmp_path, monkeypatch):
    synced_files, synced_folders = [], []
    monkeypatch.setattr(object_store, "sync_file_system", lambda folder: False)
    monkeypatch.setattr(object_store, "fsync_file", synced_files.append)
    monkeypatch.setattr(object_store, "fsync_dir", synced_folders.append)
    store = LocalObjectStore(tmp_path)
    store.put("a/x.bin", b"1", durable=False)
    store.put("b/y.bin", b"2", durable=False)
    store.put("b/z.bin", b"3")  # durable on its own: not part of the batch
    store.sync()
    assert sorted(synced_files) == [tmp_path / "a/x.bin", tmp_path / "b/y.bin"]
    assert sorted(synced_folders) == [tmp_path / "a", tmp_path / "b"]
    store.sync()  # nothing pending: nothing fsynced again
    assert len(synced_files) == 2


def test_few_objects_are_fsynced_many_flush_the_file_system(tmp_path, monkeypatch):
    """A landing of a few objects (a one-session increment) fsyncs them and leaves the rest of
    the file system's dirty pages alone; one of many objects flushes it at once."""
    flushed, synced_files = [], []
    monkeypatch.setattr(
        object_store, "sync_file_system", lambda folder: flushed.append(folder) or True
    )
    monkeypatch.setattr(object_store, "fsync_file", synced_files.append)
    monkeypatch.setattr(object_store, "fsync_dir", lambda folder: None)
    store = LocalObjectStore(tmp_path)
    store.put("few/x.bin", b"1", durable=False)
    store.sync()
    assert (flushed, synced_files) == ([], [tmp_path / "few/x.bin"])
    store.put_many(
        [(f"many/{i}.bin", b"1") for i in range(object_store.SYNCFS_ABOVE + 1)], durable=False
    )
    store.sync()
    assert flushed == [tmp_path] and len(synced_files) == 1


@pytest.mark.skipif(atomic._SYNCFS is None, reason="syncfs(2) is Linux-only")
def test_syncfs_flushes_the_lake_file_system(tmp_path):
    assert atomic.sync_file_system(tmp_path) is True
    with pytest.raises(FileNotFoundError):
        atomic.sync_file_system(tmp_path / "missing")
