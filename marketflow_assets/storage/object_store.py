"""Object storage for the raw lake: a local folder or an S3 bucket, behind four verbs.

This is the only place that knows the difference; the raw landing code above it has a single
code path. Writes are atomic: a local object is written to a temporary file, fsync'ed and
renamed (`storage/atomic.py`); an S3 PUT is atomic by itself. Readers never see half an object.
A batch of objects (a fetch's thousands of session objects) can be put with `durable=False` and
made durable by one `sync()` before the manifest that commits them is written.

A local store never follows a symbolic link: keys are joined to the root without resolving, a
key whose folders include a link is refused, `get` opens with O_NOFOLLOW and reads regular files
only, and `delete` unlinks the name itself. A link dropped in a watched folder can therefore be
rejected and removed without its target ever being read, moved or deleted.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from marketflow_assets.storage.atomic import (
    TMP_PREFIX,
    fsync_dir,
    fsync_file,
    sync_file_system,
    write_atomic,
)


class ObjectStore(Protocol):
    def put(self, key: str, data: bytes, *, durable: bool = True) -> None:
        """Write an object atomically. With `durable=False` it may not survive a power loss
        until `sync()` returns (a batch of objects then shares one barrier)."""
        ...

    def sync(self) -> None:
        """Make every object put with `durable=False` durable."""
        ...

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


class UnsafeObjectError(ValueError):
    """A local object that is a symbolic link, lies behind one, is not a regular file, or is a
    hard link where the store refuses them; the message names the key."""


class LocalObjectStore:
    def __init__(self, root: Path, *, refuse_hard_links: bool = False):
        self.root = Path(root)
        self._unsynced: set[Path] = set()  # put with durable=False, not yet synced
        self._unsynced_lock = threading.Lock()
        # Dropped files must be files of their own: a hard link would let a drop read (and a
        # rejection copy) another file's bytes, e.g. the warehouse.
        self.refuse_hard_links = refuse_hard_links

    def _path(self, key: str) -> Path:
        parts = PurePosixPath(key).parts
        if key.startswith("/") or ".." in parts:
            raise ValueError(f"object key {key!r} escapes the store root")
        path = self.root.joinpath(*parts)
        folder = self.root
        for part in parts[:-1]:
            folder = folder / part
            if folder.is_symlink():
                raise UnsafeObjectError(f"{key}: folder {folder} is a symbolic link; refused")
        return path

    def put(self, key: str, data: bytes, *, durable: bool = True) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data, durable=durable)
        if not durable:
            with self._unsynced_lock:
                self._unsynced.add(path)

    def sync(self) -> None:
        """One syncfs(2) of the lake's file system where there is one (Linux), else an fsync of
        each pending object and folder."""
        with self._unsynced_lock:
            pending, self._unsynced = self._unsynced, set()
        if not pending:
            return
        try:
            if sync_file_system(self.root):
                return
            for path in pending:
                fsync_file(path)
            for folder in {path.parent for path in pending}:
                fsync_dir(folder)
        except BaseException:
            with self._unsynced_lock:
                self._unsynced |= pending
            raise

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            # O_NONBLOCK: opening a FIFO must not hang the reader; no effect on regular files.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafeObjectError(
                    f"{key} is a symbolic link (to {str(path.readlink())!r}); links are never "
                    "followed"
                ) from None
            raise
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise UnsafeObjectError(f"{key} is not a regular file")
            if self.refuse_hard_links and info.st_nlink > 1:
                raise UnsafeObjectError(
                    f"{key} is a hard link ({info.st_nlink} names for one file); copy the file "
                    "instead of linking it"
                )
            return handle.read()

    def list(self, prefix: str) -> list[str]:
        """Keys under `prefix`, sorted: files and links (never followed), not temporary files."""
        base = self._path(prefix) if prefix else self.root
        # `prefix` is a folder in every use here ("raw/simulator/daily_bars/_manifests/").
        if base.is_symlink():
            raise UnsafeObjectError(f"{prefix}: {base} is a symbolic link; refused")
        if not base.is_dir():
            return []
        keys = []
        for folder, dirs, files in os.walk(base, followlinks=False):
            here = Path(folder)
            links = [d for d in dirs if (here / d).is_symlink()]
            for name in (*files, *links):
                if not name.startswith(TMP_PREFIX):
                    keys.append((here / name).relative_to(self.root).as_posix())
        return sorted(keys)

    def delete(self, key: str) -> None:
        """Remove the object's own name (a link itself, never what it points to)."""
        self._path(key).unlink(missing_ok=True)

    def uri(self, key: str) -> str:
        return str(self._path(key))

    def rename(self, source: str, target: str) -> bool:
        # A link is moved as a link (rename never follows it); `_path` refuses linked folders.
        src, dst = self._path(source), self._path(target)
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
                stat = self._path(key).lstat()
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

    def put(self, key: str, data: bytes, *, durable: bool = True) -> None:
        # A PUT is durable once S3 acknowledges it: `durable` changes nothing here.
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def sync(self) -> None:
        """Nothing to do: every acknowledged PUT is already durable."""

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
