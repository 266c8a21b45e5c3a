"""`daily_catch_up`: missed sessions of the daily + reference path, as ONE range run.

Every 10 minutes the sensor looks at the instance's materialization status of every
session-partitioned daily asset over the last N closed sessions
(MARKETFLOW_CATCH_UP_LOOKBACK_SESSIONS, default 30) and requests every missing session as one run
over the range from the first missing to the last missing session (raw only fetches what the
lake lacks, so sessions in between cost nothing). A session counts as done only when a run for
the whole universe materialized it: ticker-scoped runs (file drops, rebuilds, new tickers) do not
hide a missed close. It never initializes an empty deployment (that is the initial history
backfill a person launches), waits while a run or backfill covering those sessions is queued or
in progress, leaves the latest session to `daily_close` for an hour after its close, and retries
a range that failed with a growing delay, so a persistent failure does not relaunch every tick.

Three parts, so the decision can be tested without an instance:

- `CatchUpCursor`: what the sensor remembers between ticks (its cursor), typed and versioned;
  it reads the unversioned cursors earlier releases wrote.
- `observe`: the instance queries, as a `CatchUpStatus` (first loaded session, sessions done,
  runs and backfills in progress); it stops querying as soon as the answer cannot change.
- `decide`: a pure function of (window, status, cursor, wall-clock time) returning `Wait` or
  `Launch`; the sensor only turns that into a SkipReason or a RunRequest.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field

import dagster as dg

from marketflow_assets.automation.close import CLOSE_GRACE
from marketflow_assets.automation.common import (
    AUTOMATION_TAG,
    CLOSE_SELECTION,
    RAW_DAILY,
    active_backfills_touching,
    active_runs,
    automation_now,
    first_session,
    range_tags,
    run_sessions,
    run_touches,
)
from marketflow_assets.calendar import xnys
from marketflow_assets.resources import TICKERS_TAG, MarketDataResource

CATCH_UP_INTERVAL_SECONDS = 600
RETRY_BASE_SECONDS = 1800
RETRY_MAX_SECONDS = 6 * 3600
MISSING_SESSIONS_TAG = "marketflow/missing_sessions"


# -- cursor ------------------------------------------------------------------------------------
class CatchUpCursorError(ValueError):
    """The sensor's cursor cannot be read; the message says what it holds and how to recover."""


@dataclass(frozen=True)
class CatchUpCursor:
    """The sensor's memory: how many runs it requested (their run keys `catch_up:<n>`), the last
    range it requested, how often in a row, and when (epoch seconds, wall clock).

    JSON keys are those of the unversioned cursor earlier releases wrote (`n`, `range`,
    `attempts`, `requested_at`), plus `version`; a cursor without `version` is read as version 1,
    so deployments keep their run-key numbering and retry back-off across the upgrade."""

    VERSION = 1

    requests: int = 0
    span: str | None = None
    attempts: int = 0
    requested_at: float = 0.0

    @classmethod
    def from_json(cls, text: str | None) -> CatchUpCursor:
        if not text:
            return cls()
        try:
            state = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CatchUpCursorError(_unreadable(text, f"not JSON ({exc})")) from exc
        if not isinstance(state, dict):
            raise CatchUpCursorError(_unreadable(text, "not a JSON object"))
        version = state.get("version", 1)
        if version != cls.VERSION:
            raise CatchUpCursorError(
                _unreadable(text, f"version {version!r}; this release reads version {cls.VERSION}")
            )
        try:
            return cls(
                requests=int(state.get("n", 0)),
                span=str(state["range"]) if state.get("range") else None,
                attempts=int(state.get("attempts", 0)),
                requested_at=float(state.get("requested_at", 0)),
            )
        except (TypeError, ValueError) as exc:
            raise CatchUpCursorError(
                _unreadable(text, f"a field has the wrong type ({exc})")
            ) from exc

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": self.VERSION,
                "n": self.requests,
                "range": self.span,
                "attempts": self.attempts,
                "requested_at": self.requested_at,
            }
        )

    def attempts_for(self, span: str) -> int:
        """Requests in a row for `span` so far (0 if the last request was another range)."""
        return self.attempts if self.span == span else 0

    def requested(self, span: str, at: float) -> CatchUpCursor:
        """The cursor after requesting `span` at `at`."""
        return CatchUpCursor(self.requests + 1, span, self.attempts_for(span) + 1, at)


def _unreadable(text: str, why: str) -> str:
    shown = text if len(text) <= 200 else text[:200] + "..."
    return (
        f"daily_catch_up cannot read its cursor {shown!r}: {why}. Set it to the last request "
        'number, e.g. {"n": 40} (Sensors > daily_catch_up > Set cursor), so new run keys do not '
        "repeat earlier ones"
    )


def retry_delay_seconds(attempts: int) -> float:
    """The wait before request `attempts + 1` of a range still missing: 30 min, doubling, 6 h max."""
    return min(RETRY_BASE_SECONDS * 2 ** (attempts - 1), RETRY_MAX_SECONDS) if attempts else 0.0


# -- what the instance says ----------------------------------------------------------------------
@dataclass(frozen=True)
class ActiveRun:
    """A queued or running run that materializes a daily asset, with its session span."""

    run_id: str
    status: str
    first: dt.date
    last: dt.date


@dataclass(frozen=True)
class CatchUpStatus:
    """The instance's state for a lookback window. `anchor` is the first session raw/daily_bars
    was ever materialized for (None: never). Runs and backfills are only looked up when a session
    is missing; `done` only holds sessions from the anchor on."""

    anchor: dt.date | None
    done: frozenset[dt.date] = frozenset()
    runs: tuple[ActiveRun, ...] = ()
    backfills: tuple[str, ...] = ()


@dataclass(frozen=True)
class Wait:
    reason: str


@dataclass(frozen=True)
class Launch:
    first: dt.date
    last: dt.date
    missing: tuple[dt.date, ...]
    cursor: CatchUpCursor = field(compare=False)

    @property
    def run_key(self) -> str:
        # The request number: a tick re-evaluated after a crash cannot launch twice.
        return f"catch_up:{self.cursor.requests}"


def missing_sessions(window: list[dt.date], status: CatchUpStatus) -> list[dt.date]:
    """Sessions of `window` from the first loaded one on that are not done."""
    if status.anchor is None:
        return []
    return [s for s in window if s >= status.anchor and s not in status.done]


def decide(
    window: list[dt.date], status: CatchUpStatus, cursor: CatchUpCursor, now: float
) -> Wait | Launch:
    """What the catch-up does at wall-clock time `now` (epoch seconds)."""
    if not window:
        return Wait("no closed session in the lookback window yet")
    if status.anchor is None:
        return Wait(
            "raw/daily_bars was never materialized: launch the initial history backfill "
            "(the catch-up repairs a running deployment, it does not initialize one)"
        )
    missing = missing_sessions(window, status)
    if not missing:
        return Wait(
            f"every daily asset is materialized for {window[0]}..{window[-1]} "
            f"({len(window)} sessions)"
        )
    first, last = missing[0], missing[-1]
    for run in status.runs:
        if run.first <= last and first <= run.last:
            return Wait(
                f"{len(missing)} session(s) {first}..{last} missing, but run {run.run_id} "
                f"({run.first}..{run.last}) is in progress ({run.status}); waiting for it"
            )
    if status.backfills:
        return Wait(
            f"{len(missing)} session(s) missing, but backfill(s) {', '.join(status.backfills)} "
            "are in progress; waiting for them"
        )
    span = f"{first}..{last}"
    attempts = cursor.attempts_for(span)
    wait = retry_delay_seconds(attempts)
    elapsed = now - cursor.requested_at
    if attempts and elapsed < wait:
        return Wait(
            f"{span} was requested {attempts} time(s) and is still missing; next attempt in "
            f"{int(wait - elapsed)} s (see the run failure alerts)"
        )
    return Launch(first, last, tuple(missing), cursor.requested(span, now))


# -- the instance queries ------------------------------------------------------------------------
def lookback_window(now: dt.datetime, lookback: int, first: dt.date) -> list[dt.date]:
    """The last `lookback` closed sessions (not before the first partition), oldest first; the
    latest one only once `daily_close` had its chance."""
    cal = xnys()
    latest = cal.latest_closed_session(now)
    if latest is None:
        return []
    if now < cal.close_utc(latest) + CLOSE_GRACE:
        latest = cal.previous_session(latest)
        if latest is None:
            return []
    first = max(first, cal.offset(latest, -(lookback - 1)))
    return cal.sessions_in_range(first, latest) if first <= latest else []


def partitioned_daily_keys(context: dg.SensorEvaluationContext) -> list[dg.AssetKey]:
    graph = context.repository_def.asset_graph
    keys = CLOSE_SELECTION.resolve(graph)
    return sorted(
        (k for k in keys if graph.get(k).partitions_def is not None), key=lambda k: k.path
    )


def materializations_in(
    instance: dg.DagsterInstance, key: dg.AssetKey, partitions: list[str]
) -> set[tuple[str, str]]:
    """(partition, run id) of every materialization of `key` in `partitions`."""
    pairs: set[tuple[str, str]] = set()
    cursor = None
    while True:
        page = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=partitions),
            limit=1000,
            cursor=cursor,
        )
        pairs |= {(r.partition_key, r.run_id) for r in page.records if r.partition_key}
        if not page.has_more:
            return pairs
        cursor = page.cursor


def sessions_done(
    instance: dg.DagsterInstance, keys: list[dg.AssetKey], window: list[dt.date]
) -> set[dt.date]:
    """Sessions of `window` that every key has materialized in a whole-universe run."""
    partitions = [s.isoformat() for s in window]
    by_key = {key: materializations_in(instance, key, partitions) for key in keys}
    run_ids = sorted({run_id for pairs in by_key.values() for _, run_id in pairs if run_id})
    scoped: set[str] = set()
    if run_ids:
        runs = instance.get_runs(filters=dg.RunsFilter(run_ids=run_ids))
        scoped = {run.run_id for run in runs if run.tags.get(TICKERS_TAG)}
    done = set(partitions)
    for pairs in by_key.values():
        done &= {p for p, run_id in pairs if run_id not in scoped}
    return {dt.date.fromisoformat(p) for p in done}


def observe(
    instance: dg.DagsterInstance, keys: list[dg.AssetKey], window: list[dt.date]
) -> CatchUpStatus:
    """The instance's state for `window`, querying no more than the decision needs."""
    materialized = instance.get_materialized_partitions(RAW_DAILY) if window else set()
    if not materialized:
        return CatchUpStatus(anchor=None)
    status = CatchUpStatus(anchor=dt.date.fromisoformat(min(materialized)))
    candidates = [s for s in window if s >= status.anchor]
    status = CatchUpStatus(status.anchor, frozenset(sessions_done(instance, keys, candidates)))
    if not missing_sessions(window, status):
        return status
    runs = []
    for run in active_runs(instance):
        span = run_sessions(run)
        if span and run_touches(run, keys):
            runs.append(ActiveRun(run.run_id, run.status.value.lower(), span[0], span[1]))
    return CatchUpStatus(
        status.anchor,
        status.done,
        tuple(runs),
        tuple(active_backfills_touching(instance, keys)),
    )


# -- the sensor ----------------------------------------------------------------------------------
def build_catch_up_sensor(lookback_sessions: int) -> dg.SensorDefinition:
    @dg.sensor(
        name="daily_catch_up",
        target=CLOSE_SELECTION,
        minimum_interval_seconds=CATCH_UP_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Every {CATCH_UP_INTERVAL_SECONDS // 60} minutes: finds sessions of the last "
            f"{lookback_sessions} closed sessions (MARKETFLOW_CATCH_UP_LOOKBACK_SESSIONS) that a "
            "whole-universe run has not materialized for every daily asset (the deployment was "
            "down, a close run failed) and requests them as ONE run over that range, daily + "
            "reference path. Waits while such a run or backfill is in progress; retries a failed "
            "range with a growing delay (cursor). Never initializes an empty deployment. RUNNING "
            "by default: costs only instance queries when nothing is missing."
        ),
    )
    def daily_catch_up(context: dg.SensorEvaluationContext, market_data: MarketDataResource):
        cursor = CatchUpCursor.from_json(context.cursor)
        window = lookback_window(
            automation_now(market_data), lookback_sessions, first_session(context)
        )
        status = observe(context.instance, partitioned_daily_keys(context), window)
        decision = decide(window, status, cursor, time.time())
        if isinstance(decision, Wait):
            return dg.SkipReason(decision.reason)
        context.update_cursor(decision.cursor.to_json())
        context.log.info(
            f"catching up {len(decision.missing)} session(s) in {decision.cursor.span}: "
            + ", ".join(s.isoformat() for s in decision.missing)
        )
        return dg.RunRequest(
            run_key=decision.run_key,
            tags={
                AUTOMATION_TAG: "catch_up",
                **range_tags(decision.first, decision.last),
                MISSING_SESSIONS_TAG: str(len(decision.missing)),
            },
        )

    return daily_catch_up
