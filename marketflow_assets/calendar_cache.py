"""On-disk cache of exchange calendars' session arrays, so a process start does not rebuild them.

Why: exchange_calendars computes a calendar from its holiday rules (pandas `Holiday` objects
stepping through every year since 1990) whenever a process first asks for it: about 0.5 s for
XNYS on the project machine, more under load, for each exchange, in every run process, CLI
command and code-server load (the session partitions need it to build the definitions). The
result depends only on the exchange, the date range and the exchange_calendars version, so it is
kept as one `.npz` per (exchange, range, version) in the user's cache folder
(`$XDG_CACHE_HOME/marketflow/calendars`, else `~/.cache/marketflow/calendars`) and read back in
milliseconds. The range ends a fixed number of years after today, so a new file is written once a
day and the exchange's older files are removed then.

A cache that cannot be read (missing, corrupt, written by another layout) is rebuilt; one that
cannot be written (a read-only home) is skipped: the calendar is then computed as before.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import uuid
import zipfile
from collections.abc import Mapping
from pathlib import Path
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import numpy as np

LAYOUT = 1  # bump when the stored arrays change
_META = ("_name", "_tz")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "marketflow" / "calendars"


def cache_file(mic: str, start: dt.date, end: dt.date) -> Path:
    version = getattr(xcals, "__version__", "unknown")
    return cache_dir() / f"{mic}_{start}_{end}_xcals-{version}_v{LAYOUT}.npz"


def load(path: Path) -> tuple[str, ZoneInfo, dict[str, np.ndarray]] | None:
    """(name, timezone, arrays) stored at `path`, or None when there is no usable file."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files if key not in _META}
            return str(stored["_name"]), ZoneInfo(str(stored["_tz"])), arrays
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def store(path: Path, name: str, tz: ZoneInfo, arrays: Mapping[str, np.ndarray]) -> None:
    """Write atomically (readers never see half a file) and remove the exchange's older files;
    any failure leaves the cache as it was."""
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(partial, _name=np.array(name), _tz=np.array(tz.key), **arrays)
        partial.replace(path)
        mic = path.name.split("_", 1)[0]
        for older in path.parent.glob(f"{mic}_*.npz"):
            if older != path:
                older.unlink(missing_ok=True)
    except OSError:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
