"""The raw lake: append-only provider payloads plus one manifest per fetch.

Layout (under the lake root or `s3://bucket/prefix/`):

    raw/{source}/{dataset}/date=YYYY-MM-DD/{fetch_id}.parquet   payload rows of one partition
    raw/{source}/{dataset}/date=YYYY-MM-DD/{fetch_id}.json      JSON payloads (profiles)
    raw/{source}/{dataset}/_manifests/{fetch_id}.json           the fetch's manifest

Objects are immutable; a re-fetch is a new object. The manifest is written last and is the
commit: readers only see objects a manifest lists, so a fetch that dies half-way leaves nothing
visible. A manifest records the request, the provider clock (`fetched_at`), what each ticker
returned, each object's row count, size, column types and sha256, and the corporate actions
seen anywhere in the response (they re-base bars fetched earlier; see the silver layer).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from marketflow_assets.faults import fault_point
from marketflow_assets.storage.object_store import ObjectStore

MANIFEST_VERSION = 1
LINEAGE_COLUMNS = ("_source", "_fetch_id", "_fetched_at", "_object_key")
_IO_THREADS = 8
_READ_BATCH = 64  # objects read from the store at a time by one thread
log = logging.getLogger(__name__)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class RawObject:
    key: str
    partition: str
    rows: int
    bytes: int
    sha256: str
    columns: dict[str, str] = field(default_factory=dict)  # column -> Arrow type, for drift checks
    watermarks: dict[str, str] = field(default_factory=dict)  # ticker -> latest bar time (1m)


@dataclass(frozen=True)
class FetchManifest:
    fetch_id: str
    source: str
    dataset: str
    run_id: str | None
    fetched_at: dt.datetime  # provider clock
    landed_at: dt.datetime  # wall clock when the manifest was committed
    request: dict[str, Any]
    tickers: dict[
        str, dict[str, Any]
    ]  # ticker -> {"status": "ok"|"error", "rows": n, "error": ...}
    objects: tuple[RawObject, ...] = ()
    events: tuple[dict[str, Any], ...] = ()

    @property
    def ok_tickers(self) -> list[str]:
        return [t for t, info in self.tickers.items() if info.get("status") == "ok"]

    def to_json(self) -> str:
        # The fields one level deep, as `asdict` gives them to `json.dumps` (same text), without
        # its deep copy of every object's column types (~0.6 s for a 10-year daily fetch).
        body = {f.name: getattr(self, f.name) for f in fields(self)}
        body["objects"] = [{f.name: getattr(o, f.name) for f in fields(o)} for o in self.objects]
        body["manifest_version"] = MANIFEST_VERSION
        body["fetched_at"] = self.fetched_at.isoformat()
        body["landed_at"] = self.landed_at.isoformat()
        return json.dumps(body, indent=1, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> FetchManifest:
        body = json.loads(text)
        body.pop("manifest_version", None)
        return cls(
            fetch_id=body["fetch_id"],
            source=body["source"],
            dataset=body["dataset"],
            run_id=body.get("run_id"),
            fetched_at=dt.datetime.fromisoformat(body["fetched_at"]),
            landed_at=dt.datetime.fromisoformat(body["landed_at"]),
            request=body["request"],
            tickers=body["tickers"],
            objects=tuple(RawObject(**o) for o in body.get("objects", ())),
            events=tuple(body.get("events", ())),
        )


def new_fetch_id() -> str:
    """Sorts by landing time (wall clock), unique even when the provider clock stands still."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}"


def parquet_bytes(table: pa.Table) -> bytes:
    # No dictionary pages: a session object holds each ticker once and one date, so they only
    # add work (with them: ~40% more CPU to encode and ~60% more to decode, and larger files).
    # An Arrow buffer, not io.BytesIO: the writer's many small writes then stay in C++ instead
    # of taking the GIL each (objects are encoded on several threads); the bytes are the same.
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", use_dictionary=False)
    return sink.getvalue().to_pybytes()


class RawLake:
    """Lands payloads and reads them back; the same code for a local folder and S3."""

    def __init__(self, store: ObjectStore):
        self.store = store
        self._manifest_cache: dict[str, FetchManifest] = {}
        # Manifest key -> why it was skipped (empty, truncated, foreign JSON): one bad file never
        # makes a dataset unreadable; checks and logs name it.
        self.unreadable_manifests: dict[str, str] = {}

    # -- keys ------------------------------------------------------------------------------
    @staticmethod
    def dataset_prefix(source: str, dataset: str) -> str:
        return f"raw/{source}/{dataset}/"

    def manifest_key(self, source: str, dataset: str, fetch_id: str) -> str:
        return f"{self.dataset_prefix(source, dataset)}_manifests/{fetch_id}.json"

    def object_key(self, source: str, dataset: str, partition: str, fetch_id: str, ext: str) -> str:
        return f"{self.dataset_prefix(source, dataset)}date={partition}/{fetch_id}.{ext}"

    # -- landing ---------------------------------------------------------------------------
    def land_frame(
        self,
        *,
        source: str,
        dataset: str,
        frame: pd.DataFrame,
        partitions: pd.Series,
        request: dict[str, Any],
        tickers: dict[str, dict[str, Any]],
        fetched_at: dt.datetime,
        run_id: str | None,
        events: Iterable[dict[str, Any]] = (),
        watermark_column: str | None = None,
    ) -> FetchManifest:
        """Write one Parquet object per partition (rows keep the provider's columns), then the
        manifest. `partitions` gives each row's partition key; rows with NA are not landed.
        With `watermark_column`, each object records the latest value per ticker (polling)."""
        fetch_id = new_fetch_id()
        # Landed rows grouped by partition (partitions in sorted order, rows in payload order
        # within each): one copy of the payload in pandas and one in Arrow, however large.
        keep = partitions.notna().to_numpy()
        codes, names = pd.factorize(partitions[keep].astype(str), sort=True)
        order = np.argsort(codes, kind="stable")
        codes = codes[order]
        ordered = frame.iloc[np.flatnonzero(keep)[order]]
        table = pa.Table.from_pandas(ordered, preserve_index=False)
        columns = {f.name: str(f.type) for f in table.schema}
        starts = [0, *(np.flatnonzero(np.diff(codes)) + 1).tolist()]
        bounds = list(zip(starts, [*starts[1:], len(codes)], strict=True)) if len(codes) else []

        keys = [
            self.object_key(source, dataset, str(names[codes[lo]]), fetch_id, "parquet")
            for lo, _ in bounds
        ]

        def write(run: range) -> list[RawObject]:
            """Encode and put a run of consecutive objects as one batch of the store."""
            objects: list[RawObject] = []

            def encoded():
                for i in run:
                    lo, hi = bounds[i]
                    data = parquet_bytes(table.slice(lo, hi - lo))
                    marks = {}
                    if watermark_column:
                        latest = ordered.iloc[lo:hi].groupby("Ticker")[watermark_column].max()
                        marks = {t: pd.Timestamp(ts).isoformat() for t, ts in latest.items()}
                    partition = str(names[codes[lo]])
                    objects.append(
                        RawObject(
                            keys[i], partition, hi - lo, len(data), sha256_hex(data), columns, marks
                        )
                    )
                    yield keys[i], data

            # Durable all at once below (one barrier, not two fsyncs per session object).
            self.store.put_many(encoded(), durable=False)
            return objects

        objects = self._write_all(write, keys)
        fault_point("raw.objects_written")
        return self._commit(
            source, dataset, fetch_id, run_id, fetched_at, request, tickers, objects, tuple(events)
        )

    def _write_all(self, write, keys: list[str]) -> tuple[RawObject, ...]:
        """Run `write` over runs of consecutive objects on the I/O threads, then make them all
        durable (the manifest written next commits them). If a write or the barrier fails,
        every object of the fetch is removed (best effort: without a manifest they are
        invisible anyway) and the first error is raised."""
        with ThreadPoolExecutor(_IO_THREADS) as pool:
            futures = [pool.submit(write, run) for run in _runs(len(keys), _IO_THREADS)]
            wait(futures)
        try:
            for future in futures:
                future.result()  # the first failure, if any
            self.store.sync()
        except BaseException:
            # Failed writes too: an S3 PUT that timed out on the client may still have landed.
            self._remove_quietly(keys)
            raise
        return tuple(o for f in futures for o in f.result())

    def _remove_quietly(self, keys: list[str]) -> None:
        for key in keys:
            try:
                self.store.delete(key)
            except Exception as exc:  # the failure being raised matters more than this one
                log.warning(f"could not remove unlanded object {self.store.uri(key)}: {exc}")

    def land_records(
        self,
        *,
        source: str,
        dataset: str,
        records: dict[str, Any],
        partition: str,
        request: dict[str, Any],
        tickers: dict[str, dict[str, Any]],
        fetched_at: dt.datetime,
        run_id: str | None,
    ) -> FetchManifest:
        """Write a JSON payload (e.g. company profiles keyed by ticker) as one object."""
        fetch_id = new_fetch_id()
        objects: tuple[RawObject, ...] = ()
        if records:
            data = json.dumps(records, indent=1, sort_keys=True, default=str).encode()
            key = self.object_key(source, dataset, partition, fetch_id, "json")
            self.store.put(key, data)
            objects = (RawObject(key, partition, len(records), len(data), sha256_hex(data)),)
        return self._commit(
            source, dataset, fetch_id, run_id, fetched_at, request, tickers, objects, ()
        )

    def _commit(
        self, source, dataset, fetch_id, run_id, fetched_at, request, tickers, objects, events
    ) -> FetchManifest:
        manifest = FetchManifest(
            fetch_id=fetch_id,
            source=source,
            dataset=dataset,
            run_id=run_id,
            fetched_at=fetched_at.astimezone(dt.UTC),
            landed_at=dt.datetime.now(dt.UTC),
            request=request,
            tickers=tickers,
            objects=objects,
            events=events,
        )
        key = self.manifest_key(source, dataset, fetch_id)
        self.store.put(key, manifest.to_json().encode())
        self._manifest_cache[key] = manifest
        return manifest

    # -- reading ---------------------------------------------------------------------------
    def manifests(self, source: str, dataset: str) -> list[FetchManifest]:
        """Every committed fetch of a dataset, oldest first (by provider clock, then landing)."""
        keys = self.store.list(f"{self.dataset_prefix(source, dataset)}_manifests/")
        todo = [
            k
            for k in keys
            if k not in self._manifest_cache
            and k not in self.unreadable_manifests
            and k.endswith(".json")
        ]
        with ThreadPoolExecutor(_IO_THREADS) as pool:
            for key, manifest in zip(todo, pool.map(self._read_manifest, todo), strict=True):
                if isinstance(manifest, FetchManifest):
                    self._manifest_cache[key] = manifest
                else:
                    self.unreadable_manifests[key] = manifest
                    log.warning(f"skipped unreadable manifest {self.store.uri(key)}: {manifest}")
        found = [self._manifest_cache[k] for k in keys if k in self._manifest_cache]
        return sorted(found, key=lambda m: (m.fetched_at, m.fetch_id))

    def _read_manifest(self, key: str) -> FetchManifest | str:
        """The manifest, or why it cannot be one (a truncated write from a foreign tool, an
        empty file, JSON that is not a manifest of this dataset)."""
        try:
            manifest = FetchManifest.from_json(self.store.get(key).decode())
        except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError) as exc:
            return f"{type(exc).__name__}: {exc}"
        if key.rsplit("/", 1)[-1] != f"{manifest.fetch_id}.json":
            return f"fetch_id {manifest.fetch_id!r} does not match the file name"
        return manifest

    def read_frames(
        self, manifests: Iterable[FetchManifest], partitions: set[str] | None
    ) -> pd.DataFrame:
        """Payload rows of the listed objects (optionally only some partitions), with lineage
        columns `_source, _fetch_id, _fetched_at, _object_key`. Objects of one source share a
        schema and are concatenated in Arrow; sources are combined in pandas (their payloads
        may type the same column differently, e.g. CSV text vs Yahoo floats)."""
        wanted = [
            (m, o)
            for m in manifests
            for o in m.objects
            if o.key.endswith(".parquet") and (partitions is None or o.partition in partitions)
        ]

        def read(run: range) -> list[pa.Table]:
            # A run of objects per thread, fetched in batches of the store (a batch's bytes
            # are decoded before the next is read); Arrow's own decoding threads on top only
            # contend.
            tables = []
            for lo in range(run.start, run.stop, _READ_BATCH):
                batch = range(lo, min(lo + _READ_BATCH, run.stop))
                for data in self.store.get_many([wanted[i][1].key for i in batch]):
                    reader = pq.ParquetFile(pa.BufferReader(data))
                    tables.append(reader.read(use_threads=False, use_pandas_metadata=False))
            return tables

        with ThreadPoolExecutor(_IO_THREADS) as pool:
            tables = [t for run in pool.map(read, _runs(len(wanted), _IO_THREADS)) for t in run]
        if not tables:
            return pd.DataFrame(columns=list(LINEAGE_COLUMNS))
        by_schema: dict[pa.Schema, list[int]] = {}
        for i, table in enumerate(tables):
            by_schema.setdefault(table.schema, []).append(i)
        frames = [
            _with_lineage([tables[i] for i in group], [wanted[i] for i in group])
            for group in by_schema.values()
        ]
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)

    def read_records(self, obj: RawObject) -> dict[str, Any]:
        return json.loads(self.store.get(obj.key))

    def verify(self, obj: RawObject) -> str | None:
        """None if the object's bytes match its manifest, else what is wrong."""
        try:
            data = self.store.get(obj.key)
        except (FileNotFoundError, OSError, KeyError) as exc:
            return f"missing ({type(exc).__name__})"
        except Exception as exc:  # S3 NoSuchKey and friends
            return f"unreadable ({exc})"
        if len(data) != obj.bytes:
            return f"size {len(data)} != manifest {obj.bytes}"
        if sha256_hex(data) != obj.sha256:
            return "sha256 differs from manifest"
        return None


def _runs(count: int, parts: int) -> list[range]:
    """`range(count)` cut into at most `parts` consecutive runs of near-equal length."""
    size = -(-count // parts) if count else 0
    return [range(lo, min(lo + size, count)) for lo in range(0, count, size or 1)]


def _with_lineage(
    tables: list[pa.Table], objects: list[tuple[FetchManifest, RawObject]]
) -> pd.DataFrame:
    """The objects' rows concatenated, plus the lineage columns, repeated per object from its
    row count: one Python object per object, not per row."""
    frame = pa.concat_tables(tables).to_pandas()
    rows = [t.num_rows for t in tables]

    def repeated(values: list) -> np.ndarray:
        return np.repeat(np.array(values, dtype=object), rows)

    frame["_source"] = repeated([m.source for m, _ in objects])
    frame["_fetch_id"] = repeated([m.fetch_id for m, _ in objects])
    fetched_at = np.array(
        [m.fetched_at.astimezone(dt.UTC).replace(tzinfo=None) for m, _ in objects], "M8[us]"
    )
    frame["_fetched_at"] = pd.DatetimeIndex(np.repeat(fetched_at, rows)).tz_localize(dt.UTC)
    frame["_object_key"] = repeated([o.key for _, o in objects])
    return frame
