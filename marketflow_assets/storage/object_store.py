"""Object storage for the raw lake: a local folder or an S3 bucket, behind four verbs.

This is the only place that knows the difference; the raw landing code above it has a single
code path. Writes are atomic: a local object is written to a temporary file and renamed; an S3
PUT is atomic by itself. Readers never see half an object.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Protocol


class ObjectStore(Protocol):
    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def list(self, prefix: str) -> list[str]:
        """Keys under `prefix`, sorted."""
        ...

    def delete(self, key: str) -> None: ...

    def uri(self, key: str) -> str: ...

    def rename(self, source: str, target: str) -> bool:
        """Move an object; False if `source` is gone. Local: one atomic rename, so an object
        written under `source` meanwhile is never lost. S3 (no rename): copy if unchanged, then
        delete only if still unchanged."""
        ...

    def entries(self, prefix: str) -> dict[str, tuple[int, str]]:
        """Key -> (size in bytes, version: mtime or ETag) under `prefix`, without reading."""
        ...


class LocalObjectStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"object key {key!r} escapes the lake root")
        return path

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            Path(tmp).replace(path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix) if prefix else self.root
        # `prefix` is a folder in every use here ("raw/simulator/daily_bars/_manifests/").
        if not base.is_dir():
            return []
        return sorted(
            str(p.relative_to(self.root))
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-")
        )

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def uri(self, key: str) -> str:
        return str(self._path(key))

    def _link_path(self, key: str) -> Path:
        """The path of `key` itself (a symlink is moved as a link, never followed)."""
        path = self.root / key
        if not path.parent.resolve().is_relative_to(self.root.resolve()):
            raise ValueError(f"object key {key!r} escapes the lake root")
        return path

    def rename(self, source: str, target: str) -> bool:
        src, dst = self._link_path(source), self._link_path(target)
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            src.rename(dst)
        except FileNotFoundError:
            return False
        return True

    def entries(self, prefix: str) -> dict[str, tuple[int, str]]:
        out = {}
        for key in self.list(prefix):
            try:
                stat = self._link_path(key).lstat()
            except FileNotFoundError:
                continue
            out[key] = (stat.st_size, str(stat.st_mtime_ns))
        return out


class S3ObjectStore:
    """Objects under `s3://bucket/prefix/`. The client comes from dagster-aws's S3Resource, so
    endpoint and credentials follow the standard AWS variables (MinIO, LocalStack, AWS)."""

    def __init__(self, client: Any, bucket: str, prefix: str = ""):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

    def list(self, prefix: str) -> list[str]:
        strip = len(self._key(""))
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            keys.extend(item["Key"][strip:] for item in page.get("Contents", []))
        return sorted(keys)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def _etag(self, key: str) -> str | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._key(key))["ETag"]
        except self.client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def rename(self, source: str, target: str) -> bool:
        etag = self._etag(source)
        if etag is None:
            return False
        try:
            self.client.copy_object(
                Bucket=self.bucket,
                Key=self._key(target),
                CopySource={"Bucket": self.bucket, "Key": self._key(source)},
                CopySourceIfMatch=etag,
            )
        except self.client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
                return False  # replaced meanwhile: the new object stays for a later move
            raise
        # A same-name re-upload after the copy keeps its new content in place.
        if self._etag(source) == etag:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(source))
        return True

    def entries(self, prefix: str) -> dict[str, tuple[int, str]]:
        strip = len(self._key(""))
        out: dict[str, tuple[int, str]] = {}
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            for item in page.get("Contents", []):
                out[item["Key"][strip:]] = (int(item["Size"]), str(item["ETag"]))
        return dict(sorted(out.items()))
