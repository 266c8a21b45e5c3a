"""IO manager for raw assets: lands provider payloads in the lake and loads them back.

Raw assets decide *what* to fetch and hand over a `RawLanding`; this IO manager writes each
response as immutable objects plus a manifest (see `raw_lake.py`) and names them in the
materialization metadata. Loading a raw partition (downstream inputs, `load_asset_value`)
returns every landed payload row of those partitions with lineage columns.
"""

import datetime as dt
import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import pandas as pd

from marketflow_assets.sources.base import Payload
from marketflow_assets.storage.lake import LakeResource
from marketflow_assets.storage.raw_lake import FetchManifest, RawLake

FILE_DROP_SOURCE = "file"
MAX_KEYS_IN_METADATA = 20


@dataclass
class Landing:
    """One provider response and where its rows go."""

    payload: Payload
    partitions: pd.Series | None = None  # partition key per payload row; NA = not landed
    partition: str | None = None  # for JSON payloads: the one partition (fetch date)
    events: list[dict[str, Any]] = field(default_factory=list)
    landed: tuple[dt.date, dt.date] | None = None  # sessions this fetch answers for (coverage)
    watermark_column: str | None = None  # record the latest bar time per ticker (1m polling)

    @property
    def request(self) -> dict[str, Any]:
        if self.landed is None:
            return self.payload.request
        first, last = self.landed
        return {
            **self.payload.request,
            "landed": {"first": first.isoformat(), "last": last.isoformat()},
        }


@dataclass
class RawLanding:
    """What a raw asset hands over. `landings` are landed one at a time, in order: a generator
    can fetch the next response only once the previous one is in the lake, so a range run holds
    one response in memory, not all of them. `metadata` is read after the last landing, so the
    generator may fill it in as it goes."""

    dataset: str
    landings: Iterable[Landing] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


def ticker_status(payload: Payload) -> dict[str, dict[str, Any]]:
    status: dict[str, dict[str, Any]] = {}
    if payload.records:
        status = {t: {"status": "ok", "rows": 1} for t in payload.records}
    elif not payload.frame.empty:
        counts = payload.frame["Ticker"].value_counts()
        status = {t: {"status": "ok", "rows": int(n)} for t, n in counts.items()}
    for ticker, error in payload.errors.items():
        status[ticker] = {"status": "error", "rows": 0, "error": error}
    return status


class RawLakeIOManager(dg.ConfigurableIOManager):
    """Raw payloads of the configured source (plus dropped files) in the lake."""

    lake: dg.ResourceDependency[LakeResource]
    source: str

    def handle_output(self, context: dg.OutputContext, obj: RawLanding) -> None:
        if not isinstance(obj, RawLanding):
            raise dg.Failure(f"{context.asset_key.to_user_string()} must return a RawLanding")
        raw = self.lake.raw()
        # `map` keeps no reference to a landing once it is written: its payload is freed
        # before the next one is fetched.
        land = functools.partial(self._land, raw, obj.dataset, context.run_id)
        manifests: list[FetchManifest] = list(map(land, obj.landings))
        # Landed: drop the responses. A run that keeps step outputs (`execute_in_process`,
        # `materialize`) would otherwise hold every fetched payload to its end.
        obj.landings = ()
        objects = [o for m in manifests for o in m.objects]
        store = raw.store
        context.add_output_metadata(
            {
                "lake": dg.MetadataValue.text(self.lake.location()),
                "fetches": dg.MetadataValue.int(len(manifests)),
                "objects_written": dg.MetadataValue.int(len(objects)),
                "rows_landed": dg.MetadataValue.int(sum(o.rows for o in objects)),
                "manifests": dg.MetadataValue.json(
                    [
                        store.uri(raw.manifest_key(m.source, m.dataset, m.fetch_id))
                        for m in manifests
                    ]
                ),
                "objects": dg.MetadataValue.json(
                    [
                        {"uri": store.uri(o.key), "rows": o.rows, "sha256": o.sha256}
                        for o in objects[:MAX_KEYS_IN_METADATA]
                    ]
                    + (
                        [f"... and {len(objects) - MAX_KEYS_IN_METADATA} more (see the manifests)"]
                        if len(objects) > MAX_KEYS_IN_METADATA
                        else []
                    )
                ),
                **obj.metadata,
            }
        )

    @staticmethod
    def _land(raw: RawLake, dataset: str, run_id: str, landing: Landing) -> FetchManifest:
        payload = landing.payload
        common = {
            "source": payload.source,
            "dataset": dataset,
            "request": landing.request,
            "tickers": ticker_status(payload),
            "fetched_at": payload.fetched_at,
            "run_id": run_id,
        }
        if landing.partitions is not None:
            return raw.land_frame(
                frame=payload.frame,
                partitions=landing.partitions,
                events=landing.events,
                watermark_column=landing.watermark_column,
                **common,
            )
        return raw.land_records(
            records=payload.records,
            partition=landing.partition or payload.fetched_at.date().isoformat(),
            **common,
        )

    def _manifests(self, dataset: str) -> list[FetchManifest]:
        raw = self.lake.raw()
        return [
            m
            for s in dict.fromkeys((self.source, FILE_DROP_SOURCE))
            for m in raw.manifests(s, dataset)
        ]

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        dataset = context.asset_key.path[-1]
        manifests = self._manifests(dataset)
        if any(o.key.endswith(".json") for m in manifests for o in m.objects):
            return self._load_records(manifests)
        partitions = set(context.asset_partition_keys) if context.has_asset_partitions else None
        return self.lake.raw().read_frames(manifests, partitions)

    def _load_records(self, manifests: list[FetchManifest]) -> pd.DataFrame:
        """JSON payloads (profiles) as one row per fetch and ticker."""
        raw = self.lake.raw()
        rows = []
        for manifest in manifests:
            for obj in manifest.objects:
                for ticker, record in raw.read_records(obj).items():
                    rows.append(
                        {
                            "ticker": ticker,
                            "record": json.dumps(record, sort_keys=True),
                            "_source": manifest.source,
                            "_fetch_id": manifest.fetch_id,
                            "_fetched_at": manifest.fetched_at,
                            "_object_key": obj.key,
                        }
                    )
        frame = pd.DataFrame(
            rows, columns=["ticker", "record", "_source", "_fetch_id", "_fetched_at", "_object_key"]
        )
        frame["_fetched_at"] = pd.to_datetime(frame["_fetched_at"], utc=True)
        return frame
