"""The raw lake on S3 through dagster-aws. Imported only when a bucket is configured
(`resources.build_lake`), so local deployments never load boto3 and dagster-aws."""

import dagster as dg
from dagster_aws.s3 import S3Resource

from marketflow_assets.storage.lake import LakeResource
from marketflow_assets.storage.object_store import ObjectStore, S3ObjectStore


class S3LakeResource(LakeResource):
    """Raw payloads under `s3://s3_bucket/s3_prefix`. Endpoint and credentials come from the
    standard AWS variables via dagster-aws's `S3Resource`."""

    s3_bucket: str
    s3_prefix: str = "marketflow"
    s3: dg.ResourceDependency[S3Resource]

    def store(self) -> ObjectStore:
        return S3ObjectStore(self.s3.get_client(), self.s3_bucket, self.s3_prefix)

    def remote_store(self) -> ObjectStore | None:
        return self.store()

    def location(self) -> str:
        return f"s3://{self.s3_bucket}/{self.s3_prefix}"
