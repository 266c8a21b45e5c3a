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

Kept between blocks (`keep_between_blocks`): a run's process opens the warehouse for every step,
check and write (~35 times in a one-session run), and each DuckDB open costs 20-100 ms and each
last close a checkpoint. A run may instead keep the lock, with what it keeps open (DuckDB's
instance), after a block ends. A process that then waits for the lock says so with a shared
`flock` on `<warehouse>.lock.wanted`; a watcher thread in the keeper sees it within
`_WATCH_SECONDS` and lets go (closes the instance, checkpointing it, then the lock) as soon as
no block of its own is open. `let_go` ends the keeping (the run's end).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

WAIT_LOG_EVERY_SECONDS = 30.0
_POLL_SECONDS = 0.2

_WATCH_SECONDS = 0.1
_mutex = threading.Lock()


@dataclass
class _Hold:
    fd: int
    depth: int
    # Kept after the last block: closes what the keeper holds open (None: not kept).
    release: Callable[[], None] | None = None


_held: dict[str, _Hold] = {}  # lock path -> this process's hold
_watching = False  # a watcher thread runs (set and cleared with `_mutex` held)


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
            entry.depth += 1
            if entry.release is not None:  # kept since an earlier block: who holds it now
                _write_holder(entry.fd, run_id, what)
    if entry is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = _acquire(path, timeout_seconds, what, log)
        _write_holder(fd, run_id, what)
        with _mutex:
            _held[key] = _Hold(fd, 1)
    try:
        yield
    finally:
        with _mutex:
            entry = _held[key]
            entry.depth -= 1
            if entry.depth == 0 and entry.release is None:
                _close(key)


def keep_between_blocks(database: str, release: Callable[[], None]) -> bool:
    """Keep the lock after this process's last open block ends, with `release` closing what is
    kept open along with it; called inside a block. Another process asking for the lock, or
    `let_go`, ends the keeping. False (and nothing kept) when another process waits already, or
    when something is kept already (another thread of this process got there first)."""
    global _watching
    key = str(lock_path(database))
    if _wanted(Path(key)):
        return False
    with _mutex:
        entry = _held.get(key)
        if entry is None or entry.depth == 0:
            raise RuntimeError(f"keep_between_blocks({database!r}) outside a lock block")
        if entry.release is not None:
            return False
        entry.release = release
        if not _watching:
            _watching = True
            threading.Thread(target=_watch, name="warehouse-lock-watch", daemon=True).start()
    return True


def is_kept(database: str) -> bool:
    """Whether this process keeps the lock of `database` between its blocks."""
    with _mutex:
        entry = _held.get(str(lock_path(database)))
        return entry is not None and entry.release is not None


def let_go(database: str) -> None:
    """Stop keeping the lock: close what is kept now, and release the lock unless a block of
    this process is still open (it is then released when that block ends)."""
    if database != ":memory:":
        _let_go(str(lock_path(database)))


def _let_go(key: str) -> None:
    with _mutex:
        entry = _held.get(key)
        if entry is None or entry.release is None:
            return
        release, entry.release = entry.release, None
        try:
            release()
        finally:
            if entry.depth == 0:
                _close(key)


def _close(key: str) -> None:
    """Release this process's lock `key` (called with `_mutex` held)."""
    entry = _held.pop(key)
    os.ftruncate(entry.fd, 0)
    os.close(entry.fd)  # closing the descriptor releases the flock


def _watch() -> None:
    """Let go of every kept lock that another process waits for (see the module docstring);
    ends when nothing is kept."""
    global _watching
    while True:
        time.sleep(_WATCH_SECONDS)
        with _mutex:
            if not any(e.release is not None for e in _held.values()):
                _watching = False
                return
            kept = [k for k, e in _held.items() if e.release is not None and e.depth == 0]
        for key in kept:
            if _wanted(Path(key)):
                # let_go releases the lock even when closing the kept instance fails.
                with contextlib.suppress(Exception):
                    _let_go(key)


def _wanted_path(path: Path) -> Path:
    return path.with_name(path.name + ".wanted")


def _wanted(path: Path) -> bool:
    """Whether a process waits for the lock `path` (holds a shared flock on its `.wanted`)."""
    try:
        fd = os.open(_wanted_path(path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _acquire(path: Path, timeout_seconds: float, what: str, log) -> int:
    fd = _try_lock(path)
    if fd is not None:
        return fd
    # Waiting: say so, for a process keeping the lock between its blocks to let go.
    wanted = os.open(_wanted_path(path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(wanted, fcntl.LOCK_SH)
        return _wait(path, timeout_seconds, what, log)
    finally:
        os.close(wanted)


def _wait(path: Path, timeout_seconds: float, what: str, log) -> int:
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
