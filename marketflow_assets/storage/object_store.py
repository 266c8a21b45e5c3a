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

`put_many` and `get_many` move a batch of objects (a fetch's session objects) with the same
guarantees at a few system calls per object: folders are walked as open descriptors, each
opened with O_NOFOLLOW relative to its parent, and shared by consecutive keys.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from marketflow_assets.storage.atomic import (
    TMP_PREFIX,
    fsync_dir,
    fsync_file,
    sync_file_system,
    write_atomic_at,
)


class ObjectStore(Protocol):
    def put(self, key: str, data: bytes, *, durable: bool = True) -> None:
        """Write an object atomically. With `durable=False` it may not survive a power loss
        until `sync()` returns (a batch of objects then shares one barrier)."""
        ...

    def put_many(self, items: Iterable[tuple[str, bytes]], *, durable: bool = True) -> None:
        """`put` each (key, data) in order, as one batch (cheaper per object). `items` may be
        a generator: each object is produced only once the previous one is written."""
        ...

    def sync(self) -> None:
        """Make every object put with `durable=False` durable."""
        ...

    def get(self, key: str) -> bytes: ...

    def get_many(self, keys: Iterable[str]) -> list[bytes]:
        """`get` of each key, in order, as one batch (cheaper per object)."""
        ...

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


_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC


def _key_parts(key: str) -> tuple[str, ...]:
    """The key's path parts, or ValueError if it would leave the store root."""
    parts = PurePosixPath(key).parts
    if key.startswith("/") or ".." in parts:
        raise ValueError(f"object key {key!r} escapes the store root")
    return parts


class _Folders:
    """The folders of a batch of keys as open descriptors, walked down from the store root one
    name at a time with O_NOFOLLOW: a folder that is (or is swapped for) a symbolic link is
    refused, never followed. The descriptors of one key's folders stay open for the next key,
    so keys in folder order open each folder once."""

    def __init__(self, root: Path, *, create: bool):
        self.root, self.create = root, create
        self.root_fd: int | None = None
        self.chain: list[tuple[str, int]] = []  # (name, descriptor), from the root down

    def __enter__(self) -> _Folders:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close_from(0)
        if self.root_fd is not None:
            os.close(self.root_fd)

    def _close_from(self, depth: int) -> None:
        for _, fd in self.chain[depth:]:
            os.close(fd)
        del self.chain[depth:]

    def open(self, key: str, folders: tuple[str, ...]) -> int:
        """The descriptor of `key`'s folder (`folders` below the root), created if asked."""
        if self.root_fd is None:
            if self.create:
                self.root.mkdir(parents=True, exist_ok=True)
            self.root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
        depth = 0
        shared = min(len(self.chain), len(folders))
        while depth < shared and self.chain[depth][0] == folders[depth]:
            depth += 1
        self._close_from(depth)
        for name in folders[depth:]:
            parent = self.chain[-1][1] if self.chain else self.root_fd
            if self.create:
                # A folder, or something else if it exists: the open below judges it.
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, dir_fd=parent)
            try:
                fd = os.open(name, _FOLDER_FLAGS, dir_fd=parent)
            except OSError as exc:
                # Linux fails O_DIRECTORY | O_NOFOLLOW on a link with ENOTDIR (others: ELOOP).
                if exc.errno in (errno.ENOTDIR, errno.ELOOP) and stat.S_ISLNK(
                    os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode
                ):
                    where = self.root.joinpath(*(n for n, _ in self.chain), name)
                    raise UnsafeObjectError(
                        f"{key}: folder {where} is a symbolic link; refused"
                    ) from None
                raise
            self.chain.append((name, fd))
        return self.chain[-1][1] if self.chain else self.root_fd


SYNCFS_ABOVE = 64
"""Pending objects above which `LocalObjectStore.sync` flushes the file system at once instead
of fsyncing each (2,520 objects of a 10-year landing: 2,520 fsyncs of 1.5-5 ms each here)."""


class LocalObjectStore:
    def __init__(self, root: Path, *, refuse_hard_links: bool = False):
        self.root = Path(root)
        self._unsynced: set[Path] = set()  # put with durable=False, not yet synced
        self._unsynced_lock = threading.Lock()
        # Dropped files must be files of their own: a hard link would let a drop read (and a
        # rejection copy) another file's bytes, e.g. the warehouse.
        self.refuse_hard_links = refuse_hard_links

    def _path(self, key: str) -> Path:
        parts = _key_parts(key)
        path = self.root.joinpath(*parts)
        folder = self.root
        for part in parts[:-1]:
            folder = folder / part
            if folder.is_symlink():
                raise UnsafeObjectError(f"{key}: folder {folder} is a symbolic link; refused")
        return path

    def put(self, key: str, data: bytes, *, durable: bool = True) -> None:
        self.put_many([(key, data)], durable=durable)

    def put_many(self, items: Iterable[tuple[str, bytes]], *, durable: bool = True) -> None:
        with _Folders(self.root, create=True) as folders:
            for key, data in items:
                parts = _key_parts(key)
                write_atomic_at(folders.open(key, parts[:-1]), parts[-1], data, durable=durable)
                if not durable:
                    with self._unsynced_lock:
                        self._unsynced.add(self.root.joinpath(*parts))

    def sync(self) -> None:
        """Make the pending objects durable: an fsync of each object and folder when there are
        few, one syncfs(2) of the lake's file system (Linux) when there are many. syncfs also
        flushes every other dirty page of that file system (a warehouse's checkpoint, a copied
        home: 1.6 s of a one-session landing right after a copy), so it only pays where it
        replaces many fsyncs: a range run's thousands of objects."""
        with self._unsynced_lock:
            pending, self._unsynced = self._unsynced, set()
        if not pending:
            return
        try:
            if len(pending) > SYNCFS_ABOVE and sync_file_system(self.root):
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
        return self.get_many([key])[0]

    def get_many(self, keys: Iterable[str]) -> list[bytes]:
        with _Folders(self.root, create=False) as folders:
            return [self._read(key, folders) for key in keys]

    def _read(self, key: str, folders: _Folders) -> bytes:
        parts = _key_parts(key)
        folder = folders.open(key, parts[:-1])
        try:
            # O_NONBLOCK: opening a FIFO must not hang the reader; no effect on regular files.
            fd = os.open(parts[-1], _READ_FLAGS, dir_fd=folder)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                target = os.readlink(parts[-1], dir_fd=folder)
                raise UnsafeObjectError(
                    f"{key} is a symbolic link (to {target!r}); links are never followed"
                ) from None
            raise
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise UnsafeObjectError(f"{key} is not a regular file")
            if self.refuse_hard_links and info.st_nlink > 1:
                raise UnsafeObjectError(
                    f"{key} is a hard link ({info.st_nlink} names for one file); copy the file "
                    "instead of linking it"
                )
            chunks = []
            while chunk := os.read(fd, max(info.st_size, 1 << 16)):
                chunks.append(chunk)
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        finally:
            os.close(fd)

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
        path = self._path(key)
        path.unlink(missing_ok=True)
        with self._unsynced_lock:  # a removed object has nothing left to make durable
            self._unsynced.discard(path)

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

    def put_many(self, items: Iterable[tuple[str, bytes]], *, durable: bool = True) -> None:
        # One request per object either way; callers run batches on threads for concurrency.
        for key, data in items:
            self.put(key, data, durable=durable)

    def sync(self) -> None:
        """Nothing to do: every acknowledged PUT is already durable."""

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

    def get_many(self, keys: Iterable[str]) -> list[bytes]:
        return [self.get(key) for key in keys]

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
