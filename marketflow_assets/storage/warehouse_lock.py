"""One process at a time on the DuckDB warehouse, whatever the Dagster instance enforces.

DuckDB admits one process per database file (a second one fails at once with `Could not set
lock on file`). The `duckdb_warehouse` pool serializes warehouse steps across runs, but only on
an instance with persistent storage: `dagster asset materialize` without DAGSTER_HOME, tests and
the benchmark run on an ephemeral instance that enforces no pool. This lock is the floor under
the pool: every warehouse connection (runs, dbt, sensors) holds an exclusive `flock` on
`<warehouse>.lock` first, waits for it in order with a log line naming the holder, and fails
with a clear error after a timeout.

The kernel releases a `flock` when its process dies, SIGKILL included, so a killed run can never
leave it held. The lock is re-entrant within a process (a step opening a second connection
while it holds one, threads of one step) and not inherited by subprocesses. The lock file holds
who has it (pid, host, run, what, since) for the messages; it is never deleted (deleting a
locked file would let a second holder lock a new inode).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

WAIT_LOG_EVERY_SECONDS = 30.0
_POLL_SECONDS = 0.2

_mutex = threading.Lock()
_held: dict[str, list[int]] = {}  # lock path -> [fd, depth] for this process


class WarehouseLockTimeout(RuntimeError):
    """The warehouse stayed locked by another process for longer than the timeout."""


def lock_path(database: str) -> Path:
    return Path(f"{Path(database).resolve()}.lock")


def describe_holder(path: Path) -> str:
    """Who holds (or last held) the lock, from the lock file."""
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another process"
    if not info:
        return "another process"
    parts = [f"pid {info.get('pid')} on {info.get('host')}"]
    if info.get("run_id"):
        parts.append(f"run {info['run_id']}")
    if info.get("what"):
        parts.append(str(info["what"]))
    if info.get("since"):
        parts.append(f"since {info['since']}")
    return ", ".join(parts)


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_holder(fd: int, run_id: str | None, what: str) -> None:
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "run_id": run_id,
        "what": what,
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)


@contextmanager
def warehouse_lock(
    database: str,
    *,
    timeout_seconds: float,
    what: str = "",
    run_id: str | None = None,
    log: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold the warehouse's exclusive lock for the block. An in-memory database needs none."""
    if database == ":memory:":
        yield
        return
    path = lock_path(database)
    key = str(path)
    with _mutex:
        entry = _held.get(key)
        if entry is not None:
            entry[1] += 1
    if entry is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = _acquire(path, timeout_seconds, what, log)
        _write_holder(fd, run_id, what)
        with _mutex:
            _held[key] = [fd, 1]
    try:
        yield
    finally:
        with _mutex:
            entry = _held[key]
            entry[1] -= 1
            if entry[1] == 0:
                del _held[key]
                os.ftruncate(entry[0], 0)
                os.close(entry[0])  # closing the descriptor releases the flock


def _acquire(path: Path, timeout_seconds: float, what: str, log) -> int:
    started = time.monotonic()
    next_log = started
    while True:
        fd = _try_lock(path)
        if fd is not None:
            waited = time.monotonic() - started
            if log and waited >= 1:
                log(f"warehouse lock acquired after {waited:.0f} s ({what})")
            return fd
        waited = time.monotonic() - started
        if waited >= timeout_seconds:
            raise WarehouseLockTimeout(
                f"the warehouse {path.with_suffix('')} is still in use by "
                f"{describe_holder(path)} after waiting {waited:.0f} s ({what}); a finished or "
                "killed process releases it by itself, so that process is still running: wait "
                "for it or stop it, then retry"
            )
        if log and time.monotonic() >= next_log:
            log(
                f"waiting for the warehouse ({what}): in use by {describe_holder(path)}; "
                f"waited {waited:.0f} s of {timeout_seconds:.0f} s"
            )
            next_log += WAIT_LOG_EVERY_SECONDS
        time.sleep(_POLL_SECONDS)
