"""The raw lake as a Dagster resource: a local folder, or S3 through dagster-aws."""

from pathlib import Path

import dagster as dg
from dagster_aws.s3 import S3Resource
from pydantic import PrivateAttr

from marketflow_assets.storage.object_store import LocalObjectStore, ObjectStore, S3ObjectStore
from marketflow_assets.storage.raw_lake import RawLake


class LakeResource(dg.ConfigurableResource):
    """Where raw payloads land: `local_root`, or `s3://s3_bucket/s3_prefix` when a bucket is set.
    S3 endpoint and credentials come from the standard AWS variables via `S3Resource`."""

    local_root: str = ".marketflow/lake"
    s3_bucket: str | None = None
    s3_prefix: str = "marketflow"
    s3: dg.ResourceDependency[S3Resource]

    _raw: RawLake | None = PrivateAttr(default=None)

    def store(self) -> ObjectStore:
        if self.s3_bucket:
            return S3ObjectStore(self.s3.get_client(), self.s3_bucket, self.s3_prefix)
        return LocalObjectStore(Path(self.local_root))

    def raw(self) -> RawLake:
        if self._raw is None:
            self._raw = RawLake(self.store())
        return self._raw

    def location(self) -> str:
        return (
            f"s3://{self.s3_bucket}/{self.s3_prefix}"
            if self.s3_bucket
            else str(Path(self.local_root).resolve())
        )
