"""The raw lake moves a fetch's session objects in batches (`put_many`, `get_many`) on several
threads: batches read and write exactly what one object at a time would, a folder that is or
becomes a link is never written through, and a landing that fails on any thread leaves nothing."""

from __future__ import annotations

import datetime as dt
import threading

import pandas as pd
import pytest

from marketflow_assets.sources.base import BarsQuery
from marketflow_assets.sources.simulator import SimulatorSource
from marketflow_assets.storage import raw_lake
from marketflow_assets.storage.object_store import LocalObjectStore, UnsafeObjectError
from marketflow_assets.storage.raw_lake import RawLake
from marketflow_tests.helpers import land_daily_bars

CLOCK = dt.datetime(2024, 6, 7, 22, tzinfo=dt.UTC)
PREFIX = "raw/simulator/daily_bars/"
# Out of folder order on purpose: folders are left and entered again within one batch.
KEYS = ["a/b/1", "a/b/2", "a/c/3", "top", "a/b/4", "d/e/f/5"]


def land(raw: RawLake, first: dt.date = dt.date(2024, 3, 1)):
    frame = (
        SimulatorSource(seed=2, clock=CLOCK)
        .fetch_bars(BarsQuery(("AAA", "BBB"), first, dt.date(2024, 6, 7), "1d"))
        .frame
    )
    return land_daily_bars(raw, frame, CLOCK)


def test_a_batch_reads_and_writes_what_single_objects_do(tmp_path):
    store = LocalObjectStore(tmp_path)
    store.put_many((key, key.encode() * 1000) for key in KEYS)
    assert store.list("") == sorted(KEYS)
    assert store.get_many(KEYS) == [store.get(key) for key in KEYS]
    assert store.get_many(KEYS) == [key.encode() * 1000 for key in KEYS]
    assert (tmp_path / "a" / "b" / "1").stat().st_mode & 0o777 == 0o600  # as mkstemp made it
    assert not list(tmp_path.rglob(".tmp-*"))
    with pytest.raises(FileNotFoundError):
        store.get_many(["a/b/1", "a/b/missing"])
    with pytest.raises(FileNotFoundError):
        store.get_many(["no/such/folder"])
    with pytest.raises(ValueError, match="escapes"):
        store.put_many([("a/../../x", b"")])


def test_a_batch_never_writes_or_reads_through_a_linked_folder(tmp_path):
    root, outside = tmp_path / "store", tmp_path / "outside"
    (root / "a").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret").write_text("do not read")
    (root / "a" / "link").symlink_to(outside, target_is_directory=True)
    (root / "a" / "file").symlink_to(outside / "secret")
    store = LocalObjectStore(root)

    with pytest.raises(UnsafeObjectError, match=r"a/link/new: folder .* symbolic link"):
        store.put_many([("a/ok", b"1"), ("a/link/new", b"2")])
    assert (root / "a" / "ok").read_bytes() == b"1"  # written before the refusal
    with pytest.raises(UnsafeObjectError, match="symbolic link"):
        store.get_many(["a/ok", "a/link/secret"])
    with pytest.raises(UnsafeObjectError, match="a/file is a symbolic link"):
        store.get_many(["a/ok", "a/file"])
    assert [p.name for p in outside.iterdir()] == ["secret"]


def test_a_folder_swapped_for_a_link_midway_is_not_followed(tmp_path):
    """The batch holds its folders open: a folder renamed away and replaced by a link after the
    first object still gets the next object of that folder, and the link's target nothing."""
    root, outside = tmp_path / "store", tmp_path / "outside"
    outside.mkdir()
    store = LocalObjectStore(root)

    def objects():
        yield "a/b/1", b"1"
        (root / "a" / "b").rename(root / "a" / "moved")
        (root / "a" / "b").symlink_to(outside, target_is_directory=True)
        yield "a/b/2", b"2"

    store.put_many(objects())
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in (root / "a" / "moved").iterdir()) == ["1", "2"]
    with pytest.raises(UnsafeObjectError, match="symbolic link"):
        store.put_many([("a/b/3", b"3")])  # a new batch opens the folder anew: refused


def test_reading_many_objects_at_once_equals_reading_each(tmp_path, monkeypatch):
    monkeypatch.setattr(raw_lake, "_READ_BATCH", 3)  # several store batches per thread
    raw = RawLake(LocalObjectStore(tmp_path))
    manifest = land(raw)
    partitions = [o.partition for o in manifest.objects]
    assert len(partitions) > 2 * raw_lake._IO_THREADS  # several objects per thread
    assert partitions == sorted(partitions)  # session order, whatever thread wrote them
    reader = RawLake(LocalObjectStore(tmp_path))
    together = reader.read_frames([manifest], None)
    one_by_one = pd.concat(
        [reader.read_frames([manifest], {p}) for p in partitions], ignore_index=True
    )
    pd.testing.assert_frame_equal(together, one_by_one, check_exact=True)
    for obj in manifest.objects:
        assert reader.verify(obj) is None


def test_an_encoding_failure_on_one_thread_leaves_nothing_behind(tmp_path, monkeypatch):
    encode, calls, lock = raw_lake.parquet_bytes, [], threading.Lock()

    def failing(table):
        with lock:
            calls.append(1)
            fail = len(calls) == 20
        if fail:
            raise RuntimeError("encoder failed")
        return encode(table)

    monkeypatch.setattr(raw_lake, "parquet_bytes", failing)
    store = LocalObjectStore(tmp_path)
    with pytest.raises(RuntimeError, match="encoder failed"):
        land(RawLake(store))
    assert len(calls) > 20  # the other threads went on; their objects were removed too
    assert store.list(PREFIX) == []
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # no temporaries either
    assert store._unsynced == set()  # nothing removed is left for the next barrier


def test_any_name_the_file_system_allows_is_written_atomically(tmp_path):
    """The temporary's name does not grow with the object's (a dropped file's rejection reason
    is named after the file)."""
    store = LocalObjectStore(tmp_path)
    leftover = tmp_path / "landing" / ".tmp-left-by-a-killed-writer"
    leftover.parent.mkdir()
    leftover.write_bytes(b"")
    name = "x" * 240 + ".reason.txt"  # 251 characters of the 255 allowed
    store.put(f"landing/{name}", b"why")
    assert store.get(f"landing/{name}") == b"why"
    assert sorted(p.name for p in leftover.parent.iterdir()) == sorted([leftover.name, name])
