"""Raw-layer checks, from the lake's manifests and objects (nothing in the warehouse):

- `raw_integrity`: every object in scope has the size and sha256 its manifest recorded
  (`RawLake.verify`). ERROR and blocking: bronze is not built from bytes that are not what the
  provider served.
- `payload_schema`: the columns each fetch landed (types recorded per object in the manifest)
  against the provider format (`sources/base.py`: DAILY_PAYLOAD_COLUMNS /
  INTRADAY_PAYLOAD_COLUMNS plus `Ticker`). A new column is WARN; a missing or retyped column is
  ERROR. Reported by column name; the objects stay in the lake as landed.
- `provider_errors`: tickers whose latest fetch for the scope came back without data, with the
  provider's reason (the manifests' per-ticker status). WARN: the rest of the universe landed,
  and `completeness` on silver lists the (ticker, session) pairs that are missing as a result.

`raw_row_counts` counts the rows bronze takes from raw (per (ticker, ts) the latest fetch's
rows, like `transforms.payloads.latest_fetch_rows`) for the silver row reconciliation.
"""

import io
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq

from marketflow_assets.checks.framework import (
    ERROR,
    WARN,
    CheckDef,
    CheckRun,
    Outcome,
    Scope,
    Suite,
)
from marketflow_assets.sources.base import (
    DAILY_PAYLOAD_COLUMNS,
    INTRADAY_PAYLOAD_COLUMNS,
    TICKER_COLUMN,
)
from marketflow_assets.sources.csv_files import OPTIONAL_COLUMNS as CSV_OPTIONAL_COLUMNS
from marketflow_assets.storage.raw_io_manager import FILE_DROP_SOURCE
from marketflow_assets.storage.raw_lake import FetchManifest, RawLake, RawObject
from marketflow_assets.transforms.payloads import DAILY_REQUIRED, INTRADAY_REQUIRED, bar_timestamps

IO_THREADS = 8
PAYLOAD_COLUMNS = {
    "daily_bars": (TICKER_COLUMN, *DAILY_PAYLOAD_COLUMNS),
    "intraday_bars_1m": (TICKER_COLUMN, *INTRADAY_PAYLOAD_COLUMNS),
}
REQUIRED_COLUMNS = {
    "daily_bars": (TICKER_COLUMN, *DAILY_REQUIRED),
    "intraday_bars_1m": (TICKER_COLUMN, *INTRADAY_REQUIRED),
}
TIME_COLUMNS = {"daily_bars": "Date", "intraday_bars_1m": "Datetime"}
# Sources whose payload keeps every cell as text (CSV exports, dropped files): text is a valid
# type for every column, and the columns Yahoo's export format makes optional may be absent.
TEXT_SOURCES = {"csv", FILE_DROP_SOURCE}
EXPECTED_FAMILY = {TICKER_COLUMN: "text", "Date": "time", "Datetime": "time"}  # others: number


@dataclass(frozen=True)
class LakeObject:
    manifest: FetchManifest
    obj: RawObject


def raw_manifests(run: CheckRun, dataset: str) -> list[FetchManifest]:
    """Committed fetches of the configured source and of dropped files, oldest first."""
    lake = run.resources.lake.raw()
    sources = dict.fromkeys((run.resources.market_data.source, FILE_DROP_SOURCE))
    found = [m for s in sources for m in lake.manifests(s, dataset)]
    return sorted(found, key=lambda m: (m.fetched_at, m.fetch_id))


def objects_in_scope(manifests: Iterable[FetchManifest], scope: Scope) -> list[LakeObject]:
    partitions = {s.isoformat() for s in scope.sessions} if scope.partitioned else None
    return [
        LakeObject(m, o)
        for m in manifests
        for o in m.objects
        if partitions is None or o.partition in partitions
    ]


def _read_columns(lake: RawLake, item: LakeObject, columns: tuple[str, ...]) -> pd.DataFrame:
    parquet = pq.ParquetFile(io.BytesIO(lake.store.get(item.obj.key)))
    present = [c for c in columns if c in parquet.schema_arrow.names]
    frame = parquet.read(columns=present).to_pandas()
    return frame.assign(
        _partition=item.obj.partition,
        _fetched_at=item.manifest.fetched_at,
        _fetch_id=item.manifest.fetch_id,
    )


def raw_row_counts(
    lake: RawLake, objects: list[LakeObject], dataset: str, detail: set[str] | None = None
) -> pd.DataFrame:
    """Rows bronze takes from raw, per (session_date, ticker): for each (ticker, ts) the rows of
    its latest fetch (provider clock, then landing order). A partition with one object is
    counted from its manifest (ticker NULL: the object's total) unless it is in `detail`;
    partitions with several objects (re-fetches, added tickers, intraday polls) are read
    (ticker and time columns only)."""
    by_partition: dict[str, list[LakeObject]] = defaultdict(list)
    for item in objects:
        if item.obj.key.endswith(".parquet"):
            by_partition[item.obj.partition].append(item)
    totals, to_read = [], []
    for partition, items in by_partition.items():
        if len(items) == 1 and partition not in (detail or set()):
            totals.append((partition, None, items[0].obj.rows))
        else:
            to_read += items
    counted = pd.DataFrame(totals, columns=["session_date", "ticker", "rows"])
    if to_read:
        time_column = TIME_COLUMNS[dataset]
        with ThreadPoolExecutor(IO_THREADS) as pool:
            frames = list(
                pool.map(
                    lambda item: _read_columns(lake, item, (TICKER_COLUMN, time_column)), to_read
                )
            )
        rows = pd.concat(frames, ignore_index=True)
        if TICKER_COLUMN not in rows:
            rows[TICKER_COLUMN] = None
        rows["_ts"] = (
            bar_timestamps(rows[time_column]) if time_column in rows else pd.NaT
        )  # same key as bronze
        ordered = rows.sort_values(["_fetched_at", "_fetch_id"], kind="stable")
        winner = ordered.groupby([TICKER_COLUMN, "_ts"], sort=False, dropna=False)[
            "_fetch_id"
        ].transform("last")
        kept = ordered[ordered["_fetch_id"] == winner]
        detailed = (
            kept.assign(ticker=kept[TICKER_COLUMN].astype(str))
            .groupby(["_partition", "ticker"], as_index=False)
            .size()
            .rename(columns={"_partition": "session_date", "size": "rows"})
        )
        counted = pd.concat([counted, detailed], ignore_index=True)
    counted["session_date"] = pd.to_datetime(counted["session_date"])
    counted["rows"] = counted["rows"].astype("int64")
    counted["ticker"] = counted["ticker"].astype(object)
    return counted


# -- the raw suite ------------------------------------------------------------------------------
def prepare_raw(dataset: str):
    def prepare(run: CheckRun) -> None:
        manifests = raw_manifests(run, dataset)
        run.state["dataset"] = dataset
        run.state["manifests"] = manifests
        run.state["objects"] = objects_in_scope(manifests, run.scope)

    return prepare


def _tickers_of(manifests: Iterable[FetchManifest]) -> list[str]:
    return sorted({t for m in manifests for t in m.ok_tickers})


def integrity_check(dataset: str) -> CheckDef:
    def evaluate(run: CheckRun) -> Outcome:
        objects: list[LakeObject] = run.state["objects"]
        lake = run.resources.lake.raw()
        with ThreadPoolExecutor(IO_THREADS) as pool:
            verdicts = list(pool.map(lambda item: lake.verify(item.obj), objects))
        bad = [
            {
                "session_date": item.obj.partition,
                "object": lake.store.uri(item.obj.key),
                "problem": verdict,
                "manifest_sha256": item.obj.sha256,
                "fetch_id": item.manifest.fetch_id,
                "source": item.manifest.source,
            }
            for item, verdict in zip(objects, verdicts, strict=True)
            if verdict
        ]
        frame = pd.DataFrame(
            bad,
            columns=["session_date", "object", "problem", "manifest_sha256", "fetch_id", "source"],
        ).astype(object)
        frame["session_date"] = pd.to_datetime(frame["session_date"], errors="coerce")
        run.con.register("_bad_objects", frame)
        try:
            outcome = run.failures(
                "SELECT * FROM _bad_objects",
                ok=f"{len(objects)} object(s) match their manifests' size and sha256",
                failed="{n} raw object(s) differ from their manifest (missing, resized or altered)",
                checked=len(objects),
                ticker=None,
                # Unreadable manifest files are skipped by every reader (one bad file must not
                # stop the dataset); they are named here so someone looks at them.
                metadata={
                    "objects_verified": len(objects),
                    "unreadable_manifests": [
                        lake.store.uri(k) for k in sorted(lake.unreadable_manifests)
                    ][:100],
                },
            )
        finally:
            run.con.unregister("_bad_objects")
        bad_fetches = {row["fetch_id"] for row in bad}
        outcome.tickers = _tickers_of(
            m for m in run.state["manifests"] if m.fetch_id in bad_fetches
        )
        return outcome

    return CheckDef(
        name="raw_integrity",
        description=(
            f"Every raw {dataset} object of the scope has the size and sha256 its fetch manifest "
            "recorded (objects are immutable: a difference means the lake was altered or lost "
            "data). Failing rows: objects. Blocking: bronze is not built from them."
        ),
        evaluate=evaluate,
        severity=ERROR,
        blocking=True,
    )


def type_family(arrow_type: str) -> str:
    t = arrow_type.lower()
    if t in {"string", "large_string", "utf8", "large_utf8", "string_view"}:
        return "text"
    if t.startswith(("timestamp", "date")):
        return "time"
    if t.startswith(("int", "uint", "float", "double", "decimal", "halffloat")):
        return "number"
    return t  # null, bool, list<...>, ...


def column_drift(
    dataset: str, source: str, columns: dict[str, str]
) -> list[tuple[str, str, str | None, str]]:
    """(column, problem, found type, expected) for one fetch's landed columns."""
    expected = PAYLOAD_COLUMNS[dataset]
    required = REQUIRED_COLUMNS[dataset]
    optional = set(CSV_OPTIONAL_COLUMNS) if source in TEXT_SOURCES else set()
    drift = []
    for name in expected:
        if name not in columns:
            if name in required or name not in optional:
                drift.append((name, "missing", None, "present"))
            continue
        family = type_family(columns[name])
        want = EXPECTED_FAMILY.get(name, "number")
        allowed = {want, "null"} | ({"text"} if source in TEXT_SOURCES else set())
        if family not in allowed:
            drift.append((name, "retyped", columns[name], f"a {want} type"))
    drift += [
        (name, "new", typ, "not in the provider format")
        for name, typ in columns.items()
        if name not in expected
    ]
    return drift


def in_use(objects: list[LakeObject]) -> list[LakeObject]:
    """Objects not superseded: no later fetch landed the same partition for a superset of its
    tickers (bronze then takes every bar from the later fetch)."""
    by_partition: dict[str, list[LakeObject]] = defaultdict(list)
    for item in objects:
        by_partition[item.obj.partition].append(item)
    kept = []
    for items in by_partition.values():
        ordered = sorted(items, key=lambda i: (i.manifest.fetched_at, i.manifest.fetch_id))
        for n, item in enumerate(ordered):
            mine = set(item.manifest.ok_tickers)
            if not any(mine <= set(later.manifest.ok_tickers) for later in ordered[n + 1 :]):
                kept.append(item)
    return kept


def payload_schema_check(dataset: str) -> CheckDef:
    def evaluate(run: CheckRun) -> Outcome:
        objects = in_use(run.state["objects"])
        by_fetch: dict[str, list[LakeObject]] = defaultdict(list)
        for item in objects:
            if item.obj.key.endswith(".parquet"):
                by_fetch[item.manifest.fetch_id].append(item)
        rows, sessions = [], defaultdict(int)
        drifted: list[FetchManifest] = []
        for items in by_fetch.values():
            manifest = items[0].manifest
            # Columns are recorded per object; one fetch normally shares them.
            for columns in {tuple(sorted(i.obj.columns.items())) for i in items}:
                same = [i for i in items if tuple(sorted(i.obj.columns.items())) == columns]
                drift = column_drift(dataset, manifest.source, dict(columns))
                if not drift:
                    continue
                drifted.append(manifest)
                partitions = sorted(i.obj.partition for i in same)
                for partition in partitions:
                    sessions[partition] += len(drift)
                rows += [
                    {
                        "column_name": name,
                        "problem": problem,
                        "found_type": found,
                        "expected": expected,
                        "source": manifest.source,
                        "fetch_id": manifest.fetch_id,
                        "first_session": partitions[0],
                        "last_session": partitions[-1],
                        "objects": len(same),
                    }
                    for name, problem, found, expected in drift
                ]
        problems = {r["problem"] for r in rows}
        frame = pd.DataFrame(
            rows,
            columns=[
                "column_name",
                "problem",
                "found_type",
                "expected",
                "source",
                "fetch_id",
                "first_session",
                "last_session",
                "objects",
            ],
        ).astype(object)
        run.con.register("_drift", frame)
        try:
            outcome = run.failures(
                "SELECT * FROM _drift",
                ok=f"{len(objects)} object(s) carry exactly the provider's columns and types",
                failed=(
                    "payload columns differ from the provider format: "
                    + "; ".join(
                        f"{p} {', '.join(sorted({r['column_name'] for r in rows if r['problem'] == p}))}"
                        for p in ("missing", "retyped", "new")
                        if p in problems
                    )
                ),
                checked=len(objects),
                ticker=None,
                session=None,
                order="problem, column_name, first_session",
                severity=ERROR if problems & {"missing", "retyped"} else WARN,
                metadata={
                    "missing_columns": sorted(
                        {r["column_name"] for r in rows if r["problem"] == "missing"}
                    ),
                    "retyped_columns": sorted(
                        {r["column_name"] for r in rows if r["problem"] == "retyped"}
                    ),
                    "new_columns": sorted(
                        {r["column_name"] for r in rows if r["problem"] == "new"}
                    ),
                    "expected_columns": list(PAYLOAD_COLUMNS[dataset]),
                },
            )
        finally:
            run.con.unregister("_drift")
        outcome.tickers = _tickers_of(drifted)
        outcome.sessions = dict(sorted(sessions.items()))
        return outcome

    return CheckDef(
        name="payload_schema",
        description=(
            f"Columns of the raw {dataset} payloads in use (from the types recorded per object "
            "in the manifests) against the provider format, Ticker + "
            + ", ".join(PAYLOAD_COLUMNS[dataset][1:])
            + ". WARN for a new column, ERROR for a missing or retyped one (text sources such as "
            "CSV may serve text and omit Adj Close, Dividends, Stock Splits). Failing rows: "
            "(fetch, column) pairs. The objects stay in the lake as landed."
        ),
        evaluate=evaluate,
        severity=ERROR,
    )


def _span(manifest: FetchManifest) -> tuple[str | None, str | None]:
    landed = manifest.request.get("landed") or {}
    return (
        landed.get("first") or manifest.request.get("start"),
        landed.get("last") or manifest.request.get("end"),
    )


def provider_errors_check(dataset: str) -> CheckDef:
    def evaluate(run: CheckRun) -> Outcome:
        scope: Scope = run.scope
        latest: dict[str, tuple[dict, FetchManifest]] = {}
        for manifest in run.state["manifests"]:
            first, last = _span(manifest)
            outside = (
                scope.partitioned
                and first
                and last
                and (last < scope.start.isoformat() or first > scope.end.isoformat())
            )
            if outside:
                continue
            for ticker, info in manifest.tickers.items():
                latest[ticker] = (info, manifest)
        failing = [
            {
                "ticker": ticker,
                "error": info.get("error") or "no rows",
                "requested": "..".join(filter(None, _span(manifest))) or None,
                "fetched_at": manifest.fetched_at.isoformat(),
                "fetch_id": manifest.fetch_id,
                "source": manifest.source,
            }
            for ticker, (info, manifest) in sorted(latest.items())
            if info.get("status") != "ok"
        ]
        frame = pd.DataFrame(
            failing, columns=["ticker", "error", "requested", "fetched_at", "fetch_id", "source"]
        ).astype(object)
        run.con.register("_provider_errors", frame)
        try:
            return run.failures(
                "SELECT * FROM _provider_errors",
                ok=f"every one of {len(latest)} requested ticker(s) returned data",
                failed="{n} ticker(s) without data from the provider: "
                + ", ".join(r["ticker"] for r in failing[:10])
                + (" ..." if len(failing) > 10 else ""),
                checked=len(latest),
                session=None,
                metadata={"tickers_without_data": {r["ticker"]: r["error"] for r in failing}},
            )
        finally:
            run.con.unregister("_provider_errors")

    return CheckDef(
        name="provider_errors",
        description=(
            f"Tickers whose latest {dataset} fetch for the scope came back without data (unknown "
            "or delisted symbol, no rows in the range, ...), with the provider's reason, from the "
            "manifests' per-ticker status. Failing rows: tickers. WARN: the other tickers landed; "
            "silver's completeness check lists the sessions they miss."
        ),
        evaluate=evaluate,
        severity=WARN,
    )


def raw_suite(
    asset_key: dg.AssetKey, dataset: str, partitions_def: dg.PartitionsDefinition | None
) -> Suite:
    checks = [integrity_check(dataset)]
    if dataset in PAYLOAD_COLUMNS:
        checks.append(payload_schema_check(dataset))
    checks.append(provider_errors_check(dataset))
    return Suite(
        name=f"{asset_key.to_python_identifier()}_checks",
        asset_key=asset_key,
        checks=tuple(checks),
        partitions_def=partitions_def,
        prepare=prepare_raw(dataset),
        description=f"Integrity, payload schema and provider errors of raw {dataset}.",
    )
