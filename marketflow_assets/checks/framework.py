"""The check framework: one Dagster op per table evaluates every check of that table.

A `Suite` is the checks of one asset. It becomes one `@multi_asset_check` op (one AssetCheckSpec
per check) in the warehouse pool, so a run loads the table slice *once* (`Suite.prepare`) and
every check reads that slice in DuckDB SQL. A check is a `CheckDef`: a name, a description, a
default severity, whether it blocks downstream assets, and an `evaluate(run) -> Outcome`.

Scope. Checks of session-partitioned assets are partitioned like them (AssetCheckSpec
`partitions_def`). A single-partition run evaluates that session and Dagster attributes the
result to the partition. A single-run range backfill evaluates each check *once* for the whole
range (Dagster passes no partition key, only `partition_key_range`): the check covers every
session of the range and its metadata lists the failing sessions with their failing rows
(`failing_sessions`), so a 10-year backfill is one evaluation per check, not 2,520.

Known Dagster 1.13 cost: when it creates a range run, Dagster writes one "planned" row per check
*and per partition* of the run (whatever the spec's partitions_def), each holding the serialised
event with the partition subset (~19 KB with the session exclusions): ~2 s per check for a
2,520-session run. It happens in whichever process creates the run (webserver, daemon, CLI), so
it is not patched from user code; the benchmark reports it separately.

Every evaluation carries the same metadata keys, so results read alike in the UI and in SQL:
`scope`, `failing_rows` (rows of the check's failure table: bad rows, missing pairs, bad objects
... the check's description says which), `checked_rows`, `failing_tickers`,
`failing_sessions` ({session: failing rows}), `sample` (a few failure rows as a markdown table),
plus check-specific numbers. Every evaluation is also appended to `ops.check_results`.

Per-session verdicts of a range are in the metadata and in ops.check_results
(partition_start/partition_end, failing_sessions).

Adding a check (e.g. the intraday-vs-daily reconciliation): write
`def evaluate(run: CheckRun) -> Outcome` (usually `return run.failures(sql, ...)` with a SELECT
of the failing rows over `_scoped`, the in-scope rows of the suite's table), wrap it in a
`CheckDef`, and declare it under the asset it judges in the `table_checks` of the domain that
owns the asset (`marketflow_assets/domains/`); for silver/intraday_bars_1m, `checks/intraday.py`
holds the checks and `domains/market_data.py` declares them.
"""

import dataclasses
import datetime as dt
import json
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import duckdb
import numpy as np
import pandas as pd

from marketflow_assets.calendar import xnys
from marketflow_assets.checks.per_session import report_session_evaluations
from marketflow_assets.checks.samples import sample_markdown
from marketflow_assets.contracts import ops as ops_contracts
from marketflow_assets.partitions import sessions_of
from marketflow_assets.resources import WAREHOUSE_POOL, MarketDataResource, UniverseResource
from marketflow_assets.resources.quality import QualityResource
from marketflow_assets.storage.lake import LakeResource
from marketflow_assets.storage.warehouse import (
    EVICT_ABOVE_BYTES,
    WarehouseResource,
    ensure_table,
    release_cache,
)

SAMPLE_ROWS = 5
MAX_LISTED = 100  # tickers / sessions listed in metadata (counts are always complete)
ERROR = dg.AssetCheckSeverity.ERROR
WARN = dg.AssetCheckSeverity.WARN


@dataclass(frozen=True)
class CheckResources:
    """The resources a check may read (`run.resources`), typed; the suite op takes each one as a
    resource parameter, so Dagster knows what it needs and a check sees what it gets."""

    warehouse: WarehouseResource
    lake: LakeResource
    market_data: MarketDataResource
    universe: UniverseResource
    quality: QualityResource


@dataclass(frozen=True)
class Scope:
    """The sessions one evaluation covers (None = the whole table, for unpartitioned assets)."""

    start: dt.date | None = None
    end: dt.date | None = None
    # The run's partition keys (the union of the universe's exchanges' sessions); None: the
    # NYSE sessions of [start, end].
    keys: tuple[dt.date, ...] | None = None

    @property
    def partitioned(self) -> bool:
        return self.start is not None

    @property
    def sessions(self) -> list[dt.date]:
        if self.start is None or self.end is None:
            return []
        if self.keys is not None:
            return list(self.keys)
        return xnys().sessions_in_range(self.start, self.end)

    @property
    def label(self) -> str:
        if self.start is None:
            return "whole table"
        if self.start == self.end:
            return self.start.isoformat()
        return f"{self.start}..{self.end} ({len(self.sessions)} sessions)"

    def lookback_start(self, sessions: int) -> dt.date | None:
        """The session `sessions` before `start` (or the calendar's first)."""
        if self.start is None or sessions <= 0:
            return self.start
        cal = xnys()
        i = int(np.searchsorted(cal.sessions, np.datetime64(self.start, "D")))
        return cal.sessions[max(i - sessions, 0)].item()

    @classmethod
    def of(cls, context: dg.AssetCheckExecutionContext, partitioned: bool) -> "Scope":
        if not partitioned:
            return cls()
        if context.has_partition_key:
            day = dt.date.fromisoformat(context.partition_key)
            return cls(day, day)
        if context.has_partition_key_range:
            key_range = context.partition_key_range
            return cls(
                dt.date.fromisoformat(key_range.start),
                dt.date.fromisoformat(key_range.end),
                keys=tuple(sessions_of(context)),
            )
        return cls()


@dataclass
class Outcome:
    """What one check found. `failing_rows` counts the rows of its failure table."""

    passed: bool
    summary: str
    failing_rows: int = 0
    checked_rows: int | None = None
    tickers: list[str] = field(default_factory=list)
    sessions: dict[str, int] = field(default_factory=dict)  # session -> failing rows
    sample: pd.DataFrame | None = None
    severity: dg.AssetCheckSeverity | None = None  # None: the check's default severity
    metadata: dict[str, Any] = field(default_factory=dict)
    # session -> its first failing rows (range runs: reported per session, see per_session.py)
    session_samples: dict[str, pd.DataFrame] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckDef:
    name: str
    description: str
    evaluate: Callable[["CheckRun"], Outcome]
    severity: dg.AssetCheckSeverity = ERROR
    blocking: bool = False
    additional_deps: tuple[dg.AssetKey, ...] = ()
    # Sessions before the scope the check needs in the slice; a callable gets the resources.
    lookback_sessions: int | Callable[[CheckResources], int] = 0

    def lookback(self, resources: CheckResources) -> int:
        value = self.lookback_sessions
        return int(value(resources) if callable(value) else value)


@dataclass(frozen=True)
class Suite:
    """The checks of one asset, evaluated by one op over data loaded once by `prepare`."""

    name: str  # op name
    asset_key: dg.AssetKey
    checks: tuple[CheckDef, ...]
    partitions_def: dg.PartitionsDefinition | None = None  # the asset's, for specs and scope
    prepare: Callable[["CheckRun"], None] | None = None
    description: str = ""

    def with_checks(self, *checks: CheckDef) -> "Suite":
        return dataclasses.replace(self, checks=(*self.checks, *checks))


@dataclass
class CheckRun:
    """What a check sees: the Dagster context, the resources, the scope, an open warehouse
    connection (with the suite's slice loaded by `prepare`) and a scratch space shared by the
    suite's checks."""

    context: dg.AssetCheckExecutionContext
    resources: CheckResources
    suite: Suite
    scope: Scope
    con: duckdb.DuckDBPyConnection
    lookback_sessions: int = 0
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return self.context.run.run_id

    def scalar(self, sql: str, params: Any = None) -> Any:
        """First value of the first row (fetches all rows: DuckDB 2.0 keeps a half-read result
        open and refuses `register` until it is drained)."""
        return self.con.execute(sql, params or []).fetchall()[0][0]

    def df(self, sql: str, params: Any = None) -> pd.DataFrame:
        return self.con.execute(sql, params or []).df()

    def failures(
        self,
        sql: str,
        params: Any = None,
        *,
        ok: str,
        failed: str,
        checked: int | None = None,
        ticker: str | None = "ticker",
        session: str | None = "session_date",
        order: str | None = None,
        severity: dg.AssetCheckSeverity | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Outcome:
        """Outcome from a SELECT of the failing rows. `failed` may use {n}, {tickers} and
        {sessions} (counts). Tickers, sessions and the sample come from the named columns."""
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE _failures AS {sql}", params or [])
        n = int(self.scalar("SELECT count(*) FROM _failures"))
        extra = dict(metadata or {})
        if n == 0:
            return Outcome(True, ok, 0, checked, metadata=extra)
        columns = {r[0] for r in self.con.execute("DESCRIBE _failures").fetchall()}
        tickers = (
            [
                r[0]
                for r in self.con.execute(
                    f"SELECT DISTINCT {ticker} FROM _failures WHERE {ticker} IS NOT NULL ORDER BY 1"
                ).fetchall()
            ]
            if ticker in columns
            else []
        )
        sessions = (
            {
                str(r[0]): int(r[1])
                for r in self.con.execute(
                    f"SELECT strftime({session}::DATE, '%Y-%m-%d'), count(*) FROM _failures "
                    f"WHERE {session} IS NOT NULL GROUP BY 1 ORDER BY 1"
                ).fetchall()
            }
            if session in columns
            else {}
        )
        order_by = order or ", ".join(c for c in (session, ticker) if c in columns) or "1"
        sample = self.df(f"SELECT * FROM _failures ORDER BY {order_by} LIMIT {SAMPLE_ROWS}")
        session_samples = (
            self._session_samples(session, order_by)
            if sessions and self.scope.start != self.scope.end
            else {}
        )
        return Outcome(
            False,
            # Only these placeholders: names in the text (columns, tickers) may hold braces.
            failed.replace("{n}", str(n))
            .replace("{tickers}", str(len(tickers)))
            .replace("{sessions}", str(len(sessions))),
            n,
            checked,
            tickers,
            sessions,
            sample,
            severity,
            extra,
            session_samples,
        )

    def _session_samples(self, session: str, order_by: str) -> dict[str, pd.DataFrame]:
        """The first failing rows of each failing session, in one query."""
        frame = self.df(
            f"SELECT strftime({session}::DATE, '%Y-%m-%d') AS _key, * EXCLUDE (_n) FROM ("
            f"SELECT *, row_number() OVER (PARTITION BY {session}::DATE ORDER BY {order_by}) "
            f"AS _n FROM _failures WHERE {session} IS NOT NULL) WHERE _n <= {SAMPLE_ROWS} "
            f"ORDER BY {order_by}"
        )
        return {
            key: rows.drop(columns="_key").reset_index(drop=True)
            for key, rows in frame.groupby("_key", sort=False)
        }


# -- results ---------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """JSON-able form of a metadata value."""
    if isinstance(value, dg.MetadataValue):
        value = value.value
    if isinstance(value, (dt.date, dt.datetime, pd.Timestamp)):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def plain_metadata(outcome: Outcome, scope: Scope) -> dict[str, Any]:
    metadata: dict[str, Any] = {"scope": scope.label, "failing_rows": outcome.failing_rows}
    if outcome.checked_rows is not None:
        metadata["checked_rows"] = int(outcome.checked_rows)
    if not outcome.passed:
        metadata["failing_tickers"] = outcome.tickers[:MAX_LISTED]
        metadata["failing_ticker_count"] = len(outcome.tickers)
        metadata["failing_sessions"] = dict(list(outcome.sessions.items())[:MAX_LISTED])
        metadata["failing_session_count"] = len(outcome.sessions)
        metadata["sample"] = sample_markdown(outcome.sample)
    metadata.update({k: _plain(v) for k, v in outcome.metadata.items()})
    return metadata


def _dagster_metadata(plain: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    """The check result's metadata: the plain values (Dagster types ints, floats, bools, text,
    JSON and None itself), the failing-row sample as Markdown, and any value a check gave as a
    `MetadataValue` kept as it was."""
    out = dict(plain)
    if "sample" in out:
        out["sample"] = dg.MetadataValue.md(out["sample"])
    out.update({k: v for k, v in raw.items() if isinstance(v, dg.MetadataValue)})
    return out


@dataclass(frozen=True)
class Evaluated:
    check: CheckDef
    outcome: Outcome
    metadata: dict[str, Any]

    @property
    def severity(self) -> dg.AssetCheckSeverity:
        return self.outcome.severity or self.check.severity


def to_result(suite: Suite, item: Evaluated) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=suite.asset_key,
        check_name=item.check.name,
        passed=item.outcome.passed,
        severity=item.severity,
        description=item.outcome.summary,
        metadata=_dagster_metadata(item.metadata, item.outcome.metadata),
    )


def record(
    con: duckdb.DuckDBPyConnection,
    suite: Suite,
    scope: Scope,
    items: Sequence[Evaluated],
    run_id: str,
    evaluated_at: dt.datetime,
) -> None:
    """Append the evaluations to ops.check_results (one transaction)."""
    if not items:
        return
    contract = ops_contracts.CHECK_RESULTS
    rows = pd.DataFrame(
        [
            {
                "check_name": item.check.name,
                "asset_key": suite.asset_key.to_user_string(),
                "partition_start": scope.start,
                "partition_end": scope.end,
                "passed": bool(item.outcome.passed),
                "severity": item.severity.value,
                "blocking": bool(item.check.blocking),
                "failing_rows": int(item.outcome.failing_rows),
                "checked_rows": item.outcome.checked_rows,
                "description": item.outcome.summary,
                "metadata": json.dumps(item.metadata, default=str, sort_keys=True),
                "evaluated_at": evaluated_at,
                "run_id": run_id,
            }
            for item in items
        ]
    )
    ensure_table(con, contract)
    casts = {c.name: f"CAST({c.name} AS {c.sql_type}) AS {c.name}" for c in contract.columns}
    con.register("_check_results", rows)
    try:
        con.execute(
            f"INSERT INTO {contract.table} ({', '.join(contract.column_names)}) "
            f"SELECT {', '.join(casts.values())} FROM _check_results"
        )
    finally:
        con.unregister("_check_results")


# -- the op ------------------------------------------------------------------------------------
def evaluate_suite(
    context: dg.AssetCheckExecutionContext, suite: Suite, resources: CheckResources
) -> Iterator[dg.AssetCheckResult]:
    selected_keys = context.selected_asset_check_keys
    selected = [
        c for c in suite.checks if dg.AssetCheckKey(suite.asset_key, c.name) in selected_keys
    ]
    scope = Scope.of(context, suite.partitions_def is not None)
    evaluated_at = dt.datetime.now(dt.UTC)
    items: list[Evaluated] = []
    with resources.warehouse.get_connection() as con:
        run = CheckRun(
            context,
            resources,
            suite,
            scope,
            con,
            lookback_sessions=max((c.lookback(resources) for c in selected), default=0),
        )
        setup_error: str | None = None
        if suite.prepare is not None and selected:
            try:
                suite.prepare(run)
            except Exception as exc:  # e.g. the table does not exist yet
                context.log.exception(f"{suite.name}: loading the data to check failed")
                setup_error = f"could not load {suite.asset_key.to_user_string()}: {exc}"
        for check in selected:
            started = time.perf_counter()
            if setup_error is not None:
                outcome = Outcome(False, setup_error)
            else:
                try:
                    outcome = check.evaluate(run)
                except Exception as exc:  # a broken check fails loudly, the others still run
                    context.log.exception(f"check {check.name} raised")
                    outcome = Outcome(False, f"the check raised {type(exc).__name__}: {exc}")
            outcome.metadata.setdefault(
                "evaluation_seconds", round(time.perf_counter() - started, 3)
            )
            items.append(Evaluated(check, outcome, plain_metadata(outcome, scope)))
            # what the checks read is not kept past EVICT_ABOVE_BYTES (long ranges)
            release_cache(con, above=EVICT_ABOVE_BYTES)
        try:
            record(con, suite, scope, items, context.run.run_id, evaluated_at)
        except Exception:  # the verdicts matter more than their history: report them anyway
            context.log.exception(f"{suite.name}: appending to ops.check_results failed")
    if suite.partitions_def is not None and scope.partitioned and not context.has_partition_key:
        # A range run: each session gets the verdict that covers it (see per_session.py).
        started = time.perf_counter()
        reported = report_session_evaluations(context, suite, scope, items)
        context.log.info(
            f"{suite.name}: recorded {reported} per-session verdicts in "
            f"{time.perf_counter() - started:.2f} s"
        )
    for item in items:
        yield to_result(suite, item)


def build_suite(suite: Suite) -> dg.AssetChecksDefinition:
    specs = [
        dg.AssetCheckSpec(
            check.name,
            asset=suite.asset_key,
            description=check.description,
            blocking=check.blocking,
            additional_deps=list(check.additional_deps),
            partitions_def=suite.partitions_def,
            metadata={"severity": check.severity.value, "blocking": check.blocking},
        )
        for check in suite.checks
    ]

    def checks(
        context: dg.AssetCheckExecutionContext,
        warehouse: WarehouseResource,
        lake: LakeResource,
        market_data: MarketDataResource,
        universe: UniverseResource,
        quality: QualityResource,
    ):
        resources = CheckResources(warehouse, lake, market_data, universe, quality)
        yield from evaluate_suite(context, suite, resources)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)  # partitioned AssetCheckSpec
        checks_def = dg.multi_asset_check(
            specs=specs,
            name=suite.name,
            description=suite.description or None,
            can_subset=True,
            pool=WAREHOUSE_POOL,
        )(checks)
    return checks_def
