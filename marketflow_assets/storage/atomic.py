"""Durable atomic file writes: the one helper every local writer uses.

A file is written to a temporary name in its folder, flushed and fsync'ed, renamed over the
target, and then the folder is fsync'ed so the rename itself survives a power loss. Readers see
the old file or the new one, never half of one; a crash leaves at most a `.tmp-*` file that
listings ignore.
"""

from __future__ import annotations

import ctypes
import os
import sys
import tempfile
from pathlib import Path

TMP_PREFIX = ".tmp-"


def fsync_dir(folder: Path) -> None:
    """Make renames/unlinks inside `folder` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write `data` to `path` atomically and durably (file and folder fsync'ed). With
    `durable=False` the write is still atomic (readers see the old file or the new one), but
    surviving a power loss is left to a later barrier (`sync_file_system`, or `fsync_file` and
    `fsync_dir`): many objects then cost one barrier instead of two fsyncs each."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TMP_PREFIX, suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def fsync_file(path: Path) -> None:
    """Make a written file's bytes durable (never following a link)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _load_syncfs():
    """glibc's syncfs(2) (Linux), which Python's `os` does not expose; None elsewhere."""
    try:
        syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    syncfs.argtypes = [ctypes.c_int]
    syncfs.restype = ctypes.c_int
    return syncfs


_SYNCFS = _load_syncfs() if sys.platform.startswith("linux") else None


def sync_file_system(folder: Path) -> bool:
    """Flush the whole file system holding `folder` (data and metadata: every pending write and
    rename) with one syncfs(2). False where syncfs is unavailable: the caller fsyncs each file
    and folder instead. A write-back error is raised as OSError."""
    if _SYNCFS is None:
        return False
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        if _SYNCFS(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs of {folder} failed: {os.strerror(err)}")
    finally:
        os.close(fd)
    return True
