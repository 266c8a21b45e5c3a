"""Dropped files: the landing prefix, parsing, and landing them in raw as source `file`.

Where: `$MARKETFLOW_HOME/landing/` with a local lake, `landing/` under the lake's prefix in S3
(`s3://$MARKETFLOW_S3_BUCKET/$MARKETFLOW_S3_PREFIX/landing/`). Both go through the same
`ObjectStore` verbs as the raw lake, so there is one code path.

Layout under the landing prefix:

    landing/<name>.csv | <name>.json          drop files here (sub-folders allowed)
    landing/claimed/<batch>/...               taken by the file_drops sensor, being landed by a run
    landing/claimed/<batch>/_batch.json       the batch's plan (files, tickers, sessions)
    landing/processed/<batch>/...             landed in raw by a successful run (kept for audit)
    landing/rejected/<stamp>/<name>           could not be parsed ...
    landing/rejected/<stamp>/<name>.reason.txt ... and why

Formats (one ticker per file or a Ticker column):
- CSV in Yahoo's export format, `Date,Open,High,Low,Close,Volume`, optional `Adj Close`,
  `Dividends`, `Stock Splits` (as `sources/csv_files.py`), plus a `Ticker` column or a
  `<TICKER>.csv` file name;
- JSON: a list of bar objects, or `{"ticker": "AAPL", "bars": [...]}`; keys are Yahoo's column
  names in any case/spacing (`date`, `open`, `adj_close`, `stock splits`, `ticker` ...).

Cells are kept as the text in the file (bronze types them; a bad number becomes a rejected
row in silver, not a crash). A file that cannot be read as one of these formats is rejected
whole, with the reason. Write files atomically (write elsewhere, then move/rename or S3 PUT):
names starting with `.` or ending in `.tmp`/`.part` are ignored until renamed.
"""

import datetime as dt
import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from marketflow_assets.calendar import EXCHANGE_TZ
from marketflow_assets.exchanges import UnknownExchangeError
from marketflow_assets.partitions import sessions_of
from marketflow_assets.sources.base import TICKER_COLUMN, Payload
from marketflow_assets.sources.csv_files import OPTIONAL_COLUMNS, REQUIRED_COLUMNS
from marketflow_assets.sources.fundamentals import LONG_COLUMNS
from marketflow_assets.storage.lake import LakeResource
from marketflow_assets.storage.object_store import (
    LocalObjectStore,
    ObjectStore,
    UnsafeObjectError,
)
from marketflow_assets.storage.raw_io_manager import FILE_DROP_SOURCE, Landing, RawLanding
from marketflow_assets.tickers import InvalidTickerError, validate_ticker
from marketflow_assets.transforms.fundamentals import long_rows_problem
from marketflow_assets.transforms.payloads import (
    bar_dates,
    bar_time_problems,
    corporate_action_events,
    session_dates,
)

LANDING = "landing/"
CLAIMED = f"{LANDING}claimed/"
PROCESSED = f"{LANDING}processed/"
REJECTED = f"{LANDING}rejected/"
RESERVED = (CLAIMED, PROCESSED, REJECTED)
BATCH_PLAN = "_batch.json"
# A dropped file larger than this is rejected unread (a day of bars for the whole universe is a
# few MB; split bigger histories into several files).
MAX_DROP_BYTES = 64 * 1024 * 1024
# A claim without a plan this old is from a tick that died: its files go back to landing/.
STALE_CLAIM_SECONDS = 120
SUPPORTED = (".csv", ".json")
IGNORED_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp")
COLUMNS = (TICKER_COLUMN, *REQUIRED_COLUMNS[:5], "Adj Close", "Volume", "Dividends", "Stock Splits")
_ALIASES = {re.sub(r"[^a-z]", "", c.lower()): c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)}
_ALIASES |= {"ticker": TICKER_COLUMN, "symbol": TICKER_COLUMN, "adjclose": "Adj Close"}
_ALIASES |= {"splits": "Stock Splits", "dividend": "Dividends", "split": "Stock Splits"}


class DropRejected(ValueError):
    """A dropped file that cannot be read; the message is the reason written beside it."""


@dataclass(frozen=True)
class DroppedFile:
    key: str
    frame: pd.DataFrame  # Ticker + Yahoo columns (bars) or the long format (statements), as text
    tickers: tuple[str, ...]
    first: dt.date | None  # first and last session of its rows (bars; None for statements)
    last: dt.date | None
    sha256: str
    kind: str = "bars"  # or "statements" (statement_drops.py)


def landing_store(lake: LakeResource) -> ObjectStore:
    """The store holding `landing/`: the lake's bucket and prefix in S3, else $MARKETFLOW_HOME
    (the parent of the lake's local root, which is always $MARKETFLOW_HOME/lake)."""
    remote = lake.remote_store()
    if remote is not None:
        return remote
    return LocalObjectStore(Path(lake.local_root).parent, refuse_hard_links=True)


def relative(key: str, prefix: str = LANDING) -> str:
    return key[len(prefix) :] if key.startswith(prefix) else key


def dropped_keys(store: ObjectStore) -> list[str]:
    """Files waiting in the landing prefix (not claimed, processed or rejected ones)."""
    keys = []
    for key in store.list(LANDING):
        name = PurePosixPath(key).name
        if key.startswith(RESERVED) or name.startswith(".") or name.endswith(IGNORED_SUFFIXES):
            continue
        keys.append(key)
    return keys


# -- parsing -------------------------------------------------------------------------------------
def _normalise_columns(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    renames, seen = {}, {}
    for column in frame.columns:
        name = _ALIASES.get(re.sub(r"[^a-z]", "", str(column).lower()))
        if name is None:
            continue
        if name in seen:
            raise DropRejected(f"{key}: columns {seen[name]!r} and {column!r} both mean {name!r}")
        seen[name] = column
        renames[column] = name
    frame = frame[list(renames)].rename(columns=renames)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DropRejected(
            f"{key}: missing column(s) {', '.join(missing)}; expected Yahoo's export format "
            f"{','.join(REQUIRED_COLUMNS)} (+ optional {','.join(OPTIONAL_COLUMNS)}) and a "
            "Ticker column or a <TICKER>.csv/.json file name"
        )
    return frame


def _ticker_from_name(key: str) -> str | None:
    try:
        return validate_ticker(PurePosixPath(key).stem, origin=f"file name {key}")
    except InvalidTickerError:
        return None


def _read_csv(key: str, data: bytes) -> pd.DataFrame:
    try:
        frame = pd.read_csv(
            io.BytesIO(data), dtype=str, keep_default_na=False, skipinitialspace=True
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DropRejected(f"{key}: not a readable CSV file ({exc})") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)


def _read_json(key: str, data: bytes) -> tuple[pd.DataFrame, str | None]:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DropRejected(f"{key}: not a readable JSON file ({exc})") from exc
    ticker = None
    if isinstance(doc, dict):
        ticker = doc.get("ticker") or doc.get("symbol") or doc.get("Ticker")
        doc = doc.get("bars", doc.get("rows", doc.get("data")))
    if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
        raise DropRejected(
            f'{key}: expected a list of bar objects or {{"ticker": ..., "bars": [...]}} in JSON'
        )
    frame = pd.DataFrame(doc)
    frame = frame.map(_cell) if not frame.empty else frame
    return frame, str(ticker) if ticker is not None else None


def _where(suffix: str, row: int) -> str:
    """A data row's position as a person finds it: the CSV line (header is line 1) or the
    JSON bar's index."""
    return f"line {row + 2}" if suffix == ".csv" else f"bar {row}"


def _where_in(suffix: str):
    return lambda row: _where(suffix, row)


def with_tickers(frame: pd.DataFrame, key: str, named_ticker: str | None, where) -> pd.DataFrame:
    """`frame` with a validated Ticker column: its own (`where(row)` names a bad row), else the
    JSON document's `ticker`, else the file name (<TICKER>.csv)."""
    if TICKER_COLUMN in frame.columns:
        values = frame[TICKER_COLUMN].astype(str).str.strip()
        blank = values == ""
        if blank.any():
            row = int(blank.to_numpy().argmax())
            raise DropRejected(f"{key}, {where(row)}, field Ticker: empty")
        mapping = {}
        for value in values.unique():  # distinct symbols, not rows
            try:
                mapping[value] = validate_ticker(value, origin=key)
            except InvalidTickerError as exc:
                row = int((values == value).to_numpy().argmax())
                raise DropRejected(f"{key}, {where(row)}, field Ticker: {exc}") from exc
        frame[TICKER_COLUMN] = values.map(mapping)
    else:
        ticker = named_ticker or _ticker_from_name(key)
        if named_ticker is not None:
            try:
                ticker = validate_ticker(named_ticker, origin=key)
            except InvalidTickerError as exc:
                raise DropRejected(str(exc)) from exc
        if ticker is None:
            raise DropRejected(
                f"{key}: no Ticker column, and the file name is not a ticker (name it "
                "<TICKER>.csv, e.g. AAPL.csv, or add a Ticker column)"
            )
        frame.insert(0, TICKER_COLUMN, ticker)
    return frame


# Dropped statement files (landed by `statement_drops.py`), told apart from bars by columns.
KIND = "statements"
MARKERS = {"statement", "line_item"}
REQUIRED = ("statement", "period_type", "period_end", "line_item", "value")
_TICKER_NAMES = {"ticker", "symbol"}


def is_statements(frame: pd.DataFrame) -> bool:
    return {str(c).strip().lower() for c in frame.columns} >= MARKERS


def parse_statements(
    key: str, frame: pd.DataFrame, named_ticker: str | None, where, data: bytes
) -> DroppedFile:
    """A dropped statements file (cells as text), or `DropRejected` naming file, line, field."""
    frame = frame.rename(columns=lambda c: str(c).strip().lower())
    frame = frame.rename(columns={c: TICKER_COLUMN for c in frame.columns if c in _TICKER_NAMES})
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise DropRejected(
            f"{key}: missing column(s) {', '.join(missing)}; expected the statements format "
            f"{','.join(LONG_COLUMNS)} and a ticker column or a <TICKER>.csv/.json file name"
        )
    if frame.empty:
        raise DropRejected(f"{key}: no rows")
    frame = with_tickers(frame, key, named_ticker, where)
    frame = frame.reindex(columns=[TICKER_COLUMN, *LONG_COLUMNS])
    problem = long_rows_problem(frame)
    if problem:
        row, field, why = problem
        raise DropRejected(f"{key}, {where(row)}, field {field}: {why}")
    return DroppedFile(
        key=key,
        frame=frame.fillna("").reset_index(drop=True),
        tickers=tuple(sorted(frame[TICKER_COLUMN].unique())),
        first=None,
        last=None,
        sha256=hashlib.sha256(data).hexdigest(),
        kind=KIND,
    )


def parse_drop(key: str, data: bytes, *, today: dt.date) -> DroppedFile:
    """Read a dropped file as daily bars (cells as text), or raise `DropRejected` with why."""
    suffix = PurePosixPath(key).suffix.lower()
    if suffix not in SUPPORTED:
        raise DropRejected(f"{key}: unsupported file type {suffix or '(none)'}; drop .csv or .json")
    named_ticker = None
    if suffix == ".csv":
        frame = _read_csv(key, data)
    else:
        frame, named_ticker = _read_json(key, data)
    if is_statements(frame):  # financial statements, not bars
        return parse_statements(key, frame, named_ticker, _where_in(suffix), data)
    frame = _normalise_columns(frame, key)
    if frame.empty:
        raise DropRejected(f"{key}: no rows")

    frame = with_tickers(frame, key, named_ticker, _where_in(suffix))

    problems = bar_time_problems(frame["Date"])
    if problems.notna().any():
        row = int(problems.notna().to_numpy().argmax())
        raise DropRejected(
            f"{key}, {_where(suffix, row)}, field Date: {frame['Date'].iloc[row]!r} "
            f"{problems.iloc[row]}"
        )
    dates = bar_dates(frame["Date"].astype(str).str.strip())
    if (dates.dt.date > today).any():
        raise DropRejected(
            f"{key}: rows dated after today ({today}), e.g. {dates.max().date()}; bars must "
            "have happened"
        )
    try:
        sessions = session_dates(bar_dates(frame["Date"].astype(str)), frame[TICKER_COLUMN])
    except UnknownExchangeError as exc:
        raise DropRejected(f"{key}: {exc}") from exc
    if sessions.isna().any():
        raise DropRejected(f"{key}: rows dated before the exchange calendar starts")
    ordered = [c for c in COLUMNS if c in frame.columns]
    return DroppedFile(
        key=key,
        frame=frame[ordered].reset_index(drop=True),
        tickers=tuple(sorted(frame[TICKER_COLUMN].unique())),
        first=sessions.min().date(),
        last=sessions.max().date(),
        sha256=hashlib.sha256(data).hexdigest(),
    )


# -- moving files ----------------------------------------------------------------------------------
def move(store: ObjectStore, source: str, target: str) -> bool:
    """Rename (atomic in a local folder): the object moved is the one that was there, and a
    same-name re-upload after it stays in place for the next tick. False if `source` is gone."""
    return store.rename(source, target)


def reject(
    store: ObjectStore,
    key: str,
    reason: str,
    stamp: str,
    name: str | None = None,
    *,
    keep: bool = True,
) -> str:
    """Set `key` aside under rejected/<stamp>/ (as `name`, default its path under landing/) with
    a `.reason.txt` beside it. With `keep=False` (a link, or anything that is not a file of its
    own) only the reason is written and the name itself removed: its target is never read,
    moved or deleted."""
    target = f"{REJECTED}{stamp}/{name or relative(key)}"
    store.put(f"{target}.reason.txt", (reason.rstrip() + "\n").encode())
    if keep:
        move(store, key, target)
    else:
        store.delete(key)
    return target


def dropped_entries(store: ObjectStore) -> dict[str, tuple[int, str]]:
    """Files waiting in the landing prefix -> (size, version), read from the listing only."""
    waiting = set(dropped_keys(store))
    return {k: v for k, v in store.entries(LANDING).items() if k in waiting}


def claim(store: ObjectStore, key: str, batch: str) -> str | None:
    """Take a dropped file for `batch` by renaming it to claimed/<batch>/<its name>; returns the
    claimed key, or None if the file is gone."""
    target = f"{CLAIMED}{batch}/{relative(key)}"
    return target if move(store, key, target) else None


def batch_age_seconds(batch: str, now: dt.datetime) -> float | None:
    """Seconds since a batch was claimed (its id starts with the claim's UTC stamp)."""
    try:
        stamp = dt.datetime.strptime(batch.split("-", 1)[0], "%Y%m%dT%H%M%S%fZ")
    except ValueError:
        return None
    return (now - stamp.replace(tzinfo=dt.UTC)).total_seconds()


def unplanned_claims(store: ObjectStore) -> dict[str, list[str]]:
    """Batch id -> claimed files, for batches without a plan: a tick died between claiming the
    files and writing the plan (the plan is written last: it is the commit)."""
    batches: dict[str, list[str]] = {}
    planned = set()
    for key in store.list(CLAIMED):
        batch = relative(key, CLAIMED).split("/", 1)[0]
        if PurePosixPath(key).name == BATCH_PLAN:
            planned.add(batch)
        else:
            batches.setdefault(batch, []).append(key)
    return {b: keys for b, keys in batches.items() if b not in planned}


def release_claim(store: ObjectStore, batch: str, keys: list[str]) -> list[str]:
    """Put the files of an unplanned claim back in landing/ (under landing/recovered-<batch>/
    where a file of that name was dropped again meanwhile); returns where they went."""
    existing = set(store.list(LANDING))
    prefix = f"{CLAIMED}{batch}/"
    restored = []
    for key in keys:
        target = f"{LANDING}{relative(key, prefix)}"
        if target in existing:
            target = f"{LANDING}recovered-{batch}/{relative(key, prefix)}"
        if move(store, key, target):
            restored.append(target)
    return restored


PLAN_FIELDS = ("start", "end", "tickers")
STATEMENT_PLAN_FIELDS = ("kind", "tickers")  # a statements batch: no sessions


def read_plan(store: ObjectStore, key: str) -> dict:
    """A batch plan, or `DropRejected` saying why it cannot be used (truncated, not JSON,
    missing fields)."""
    try:
        plan = json.loads(store.get(key))
        statements = isinstance(plan, dict) and plan.get("kind") == "statements"
        fields = STATEMENT_PLAN_FIELDS if statements else PLAN_FIELDS
        if not isinstance(plan, dict) or any(f not in plan for f in fields):
            raise ValueError(f"not a batch plan (needs {', '.join(fields)})")
        if not statements:
            dt.date.fromisoformat(plan["start"]), dt.date.fromisoformat(plan["end"])
    except (ValueError, TypeError, UnicodeDecodeError, UnsafeObjectError) as exc:
        raise DropRejected(f"{key}: unreadable batch plan ({exc})") from exc
    return plan


def claimed_batches(
    store: ObjectStore, unreadable: dict[str, str] | None = None
) -> dict[str, dict]:
    """Batch id -> plan, for every batch still under `landing/claimed/`. A batch whose plan
    cannot be read is left out (one bad plan never stops the others); with `unreadable`, it is
    recorded there with the reason."""
    plans = {}
    for key in store.list(CLAIMED):
        if PurePosixPath(key).name == BATCH_PLAN:
            batch = relative(key, CLAIMED).split("/", 1)[0]
            try:
                plans[batch] = read_plan(store, key)
            except DropRejected as exc:
                if unreadable is not None:
                    unreadable[batch] = str(exc)
    return plans


def requeue_batch(store: ObjectStore, batch: str, reason: str, stamp: str) -> list[str]:
    """A claimed batch whose plan is unusable: the plan goes to rejected/ with the reason and
    the batch's files go back to landing/, where the next tick parses and claims them anew.
    Returns the keys the files got back."""
    prefix = f"{CLAIMED}{batch}/"
    reject(store, f"{prefix}{BATCH_PLAN}", reason, stamp)
    returned = []
    for key in batch_files(store, batch):
        target = f"{LANDING}{relative(key, prefix)}"
        move(store, key, target)
        returned.append(target)
    return returned


def batch_files(store: ObjectStore, batch: str) -> list[str]:
    prefix = f"{CLAIMED}{batch}/"
    return [k for k in store.list(prefix) if PurePosixPath(k).name != BATCH_PLAN]


def archive(store: ObjectStore, batch: str) -> int:
    """Move a landed batch from claimed/ to processed/; returns the files moved."""
    prefix = f"{CLAIMED}{batch}/"
    keys = store.list(prefix)
    files = [k for k in keys if PurePosixPath(k).name != BATCH_PLAN]
    for key in files:
        move(store, key, f"{PROCESSED}{batch}/{relative(key, prefix)}")
    for key in keys:
        if PurePosixPath(key).name == BATCH_PLAN:
            move(store, key, f"{PROCESSED}{batch}/{BATCH_PLAN}")
    return len(files)


def claimed_drops(
    store: ObjectStore, batch: str, now: dt.datetime, *, kind: str
) -> Iterator[DroppedFile]:
    """The files of a claimed batch, parsed again (a run lands what the sensor accepted); a
    batch without files, a file no longer readable or of another kind fails the run."""
    keys = batch_files(store, batch)
    if not keys:
        raise dg.Failure(
            description=f"no dropped files under {store.uri(f'{CLAIMED}{batch}/')}",
            allow_retries=False,
        )
    today = now.astimezone(EXCHANGE_TZ).date()
    for key in keys:
        try:
            dropped = parse_drop(key, store.get(key), today=today)
        except DropRejected as exc:
            raise dg.Failure(
                description=f"claimed file can no longer be read: {exc}", allow_retries=False
            ) from exc
        if dropped.kind != kind:
            raise dg.Failure(
                description=f"{key}: a {dropped.kind} file in {kind} batch {batch}",
                allow_retries=False,
            )
        yield dropped


# -- landing in raw (the raw/daily_bars asset, run config `file_batch`) --------------------------------
def land_dropped_files(
    context: dg.AssetExecutionContext, batch: str, now: dt.datetime, lake: LakeResource
) -> RawLanding:
    """Land the files of a claimed batch in raw as source `file`: one manifest per file under
    raw/file/daily_bars/, rows of the run's sessions only. The files stay where they are; the
    file_drops sensor archives the batch once the run succeeded."""
    store = landing_store(lake)
    sessions = {s.isoformat() for s in sessions_of(context)}
    landings, described = [], []
    for dropped in claimed_drops(store, batch, now, kind="bars"):
        key = dropped.key
        frame = dropped.frame
        tickers = frame[TICKER_COLUMN]
        keys_by_row = session_dates(bar_dates(frame["Date"], tickers), tickers).dt.strftime(
            "%Y-%m-%d"
        )
        partitions = keys_by_row.where(keys_by_row.isin(sessions))
        payload = Payload(
            source=FILE_DROP_SOURCE,
            dataset="daily_bars",
            request={
                "file": store.uri(key),
                "sha256": dropped.sha256,
                "batch": batch,
                "tickers": list(dropped.tickers),
                "start": dropped.first.isoformat(),
                "end": dropped.last.isoformat(),
            },
            fetched_at=now,
            frame=frame,
        )
        landings.append(
            Landing(
                payload,
                partitions=partitions,
                events=corporate_action_events(frame),
                landed=(dropped.first, dropped.last),
            )
        )
        outside = int(partitions.isna().sum())
        described.append(
            {
                "file": store.uri(key),
                "tickers": list(dropped.tickers),
                "sessions": f"{dropped.first}..{dropped.last}",
                "rows": len(frame),
                "rows_outside_run": outside,
            }
        )
        context.log.info(
            f"{key}: {len(frame)} row(s) of {', '.join(dropped.tickers)} "
            f"{dropped.first}..{dropped.last}" + (f", {outside} outside the run" if outside else "")
        )
    return drops_landing("daily_bars", batch, landings, described)


def drops_landing(
    dataset: str, batch: str, landings: list[Landing], described: list[dict]
) -> RawLanding:
    """What a raw asset hands over for a batch of dropped files (no provider request)."""
    return RawLanding(
        dataset=dataset,
        landings=landings,
        metadata={
            "source": FILE_DROP_SOURCE,
            "file_batch": batch,
            "files": dg.MetadataValue.json(described),
            "provider_requests": 0,
        },
    )
