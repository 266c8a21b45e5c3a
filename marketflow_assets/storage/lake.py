"""The raw lake as a Dagster resource: a local folder here, or S3 (`s3_lake.py`).

The S3 variant lives in its own module so that dagster-aws (boto3 and every dagster-aws
component, ~0.5 s of imports) loads only in deployments that configure a bucket, not in every
run, code server and test process on a local lake."""

from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from marketflow_assets.storage.object_store import LocalObjectStore, ObjectStore
from marketflow_assets.storage.raw_lake import RawLake


class LakeResource(dg.ConfigurableResource):
    """Where raw payloads land: the folder `local_root`. `S3LakeResource` (same resource key,
    `lake`) lands them under `s3://s3_bucket/s3_prefix` instead."""

    local_root: str = ".marketflow/lake"

    _raw: RawLake | None = PrivateAttr(default=None)

    def store(self) -> ObjectStore:
        return LocalObjectStore(Path(self.local_root))

    def remote_store(self) -> ObjectStore | None:
        """The object store when the lake is remote (published files are copied there too),
        None for a local folder."""
        return None

    def raw(self) -> RawLake:
        if self._raw is None:
            self._raw = RawLake(self.store())
        return self._raw

    def location(self) -> str:
        return str(Path(self.local_root).resolve())
