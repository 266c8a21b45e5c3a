"""Where snapshots live: `$MARKETFLOW_HOME/serving/`.

    serving/current.duckdb              symlink -> snapshots/<id>.duckdb (replaced atomically)
    serving/snapshots/<id>.duckdb       immutable snapshot files, the newest few kept
    serving/parquet/<schema>/<table>/   the served tables as date-partitioned Parquet
    serving/parquet/_manifest.json      the snapshot the Parquet files belong to

Readers open `current.duckdb` read-only (or the Parquet files); only the publisher writes here.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from pathlib import Path

from marketflow_assets.settings import Settings

CURRENT = "current.duckdb"
SNAPSHOTS = "snapshots"
PARQUET = "parquet"
PARQUET_MANIFEST = "_manifest.json"
SUFFIX = ".duckdb"
PARTIAL_PREFIX = ".partial-"
_SNAPSHOT_ID = re.compile(r"^\d{8}T\d{12}Z-[0-9A-Za-z]{1,8}$")


def serving_dir(settings: Settings) -> Path:
    return settings.home.absolute() / "serving"


def current_snapshot_path(settings: Settings) -> Path:
    """The stable path of the current snapshot: open it with `duckdb.connect(path, read_only=True)`."""
    return serving_dir(settings) / CURRENT


def new_snapshot_id(now: dt.datetime, run_id: str) -> str:
    """Sortable by creation time (microseconds), unique per run: `20240607T220000123456Z-1a2b3c4d`."""
    stamp = now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    tag = re.sub(r"[^0-9A-Za-z]", "", run_id) or uuid.uuid4().hex
    return f"{stamp}-{tag[:8]}"


def is_snapshot_id(value: str) -> bool:
    return bool(_SNAPSHOT_ID.match(value))


def snapshot_files(root: Path) -> list[Path]:
    """Published snapshot files, oldest first."""
    folder = root / SNAPSHOTS
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"*{SUFFIX}") if is_snapshot_id(p.stem))


def current_target(root: Path) -> Path | None:
    """The snapshot file `current.duckdb` points to now, or None before the first publish."""
    try:
        target = (root / CURRENT).readlink()
    except (FileNotFoundError, OSError):
        return None
    return root / target


def switch_current(root: Path, snapshot: Path) -> None:
    """Point `current.duckdb` at `snapshot` in one rename: readers see the old or the new one."""
    link = root / f"{PARTIAL_PREFIX}{uuid.uuid4().hex}"
    link.symlink_to(snapshot.relative_to(root))
    link.replace(root / CURRENT)
