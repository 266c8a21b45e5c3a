"""Durable atomic file writes: the one helper every local writer uses.

A file is written to a temporary name in its folder, flushed and fsync'ed, renamed over the
target, and then the folder is fsync'ed so the rename itself survives a power loss. Readers see
the old file or the new one, never half of one; a crash leaves at most a `.tmp-*` file that
listings ignore.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
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
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    try:
        write_atomic_at(folder, path.name, data, durable=durable)
    finally:
        os.close(folder)


def write_atomic_at(folder_fd: int, name: str, data: bytes, *, durable: bool = True) -> None:
    """`write_atomic` into an open folder: the temporary file is created there (O_EXCL, never
    following a link, mode 0600 as `mkstemp` makes it) and renamed to `name` within it. Writing
    many objects through folder descriptors costs a few system calls each, with no path
    resolution per object and no window in which a folder swapped for a link is followed."""
    fd, tmp = _create_temporary(folder_fd)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=folder_fd)
        raise
    if durable:
        with contextlib.suppress(OSError):  # some file systems refuse it (as in `fsync_dir`)
            os.fsync(folder_fd)


def _create_temporary(folder_fd: int) -> tuple[int, str]:
    """A new empty file with a random short name (as `mkstemp`: any final name fits, and a
    temporary left by a killed writer never blocks a later one)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = f"{TMP_PREFIX}{os.urandom(8).hex()}"
        try:
            return os.open(tmp, flags, 0o600, dir_fd=folder_fd), tmp
        except FileExistsError:
            continue
    raise FileExistsError("no free temporary file name")


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
