"""After the close: the new session raw -> gold (schedule), and missed sessions (catch-up sensor).

`daily_close` fires at 13:15 and 16:15 exchange time on weekdays and asks the calendar whether a
session closed within the last two hours: 16:15 on a normal day, 13:15 on an early-close day
(13:00). Holidays, weekends and the second tick of an early-close day skip with the reason. The
run is one partition of the daily + reference path (run key `close:<session>`).

`daily_catch_up` looks at the instance's materialization status of every session-partitioned
daily asset over the last N closed sessions (MARKETFLOW_CATCH_UP_LOOKBACK_SESSIONS, default 30)
and requests every missing session as ONE run over the range from the first missing to the last
missing session (raw only fetches what the lake lacks, so sessions in between cost nothing). A
session counts as done only when a run for the whole universe materialized it: ticker-scoped runs
(file drops, rebuilds, new tickers) do not hide a missed close. It never initializes an empty
deployment (that is the initial history backfill a person launches), waits while a run or
backfill covering those sessions is queued or in progress, leaves the latest session to
`daily_close` for an hour after its close, and retries a range that failed with a growing delay
(cursor), so a persistent failure does not relaunch every tick.
"""

import datetime as dt
import json
import time

import dagster as dg

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
from marketflow_assets.calendar import EXCHANGE_TZ, xnys
from marketflow_assets.resources import TICKERS_TAG, MarketDataResource

# Evaluated 15 minutes after the early (13:00) and the regular (16:00) close, exchange time.
CLOSE_CRONS = ["15 13 * * 1-5", "15 16 * * 1-5"]
CLOSE_WINDOW = dt.timedelta(hours=2)
# The catch-up leaves the latest session to `daily_close` this long after its close.
CLOSE_GRACE = dt.timedelta(hours=1)
CATCH_UP_INTERVAL_SECONDS = 600
RETRY_BASE_SECONDS = 1800
RETRY_MAX_SECONDS = 6 * 3600


def _local(moment: dt.datetime) -> str:
    return moment.astimezone(EXCHANGE_TZ).strftime("%H:%M %Z")


def session_to_close(now: dt.datetime, first: dt.date) -> tuple[dt.date | None, str]:
    """The session whose close run is due at `now`, or None and why not."""
    cal = xnys()
    today = now.astimezone(EXCHANGE_TZ).date()
    session = cal.latest_closed_session(now)
    if session is not None and session >= first:
        close = cal.close_utc(session)
        if close <= now < close + CLOSE_WINDOW:
            early = " (early close)" if cal.is_early_close(session) else ""
            return session, f"{session} closed at {_local(close)}{early}"
    if not cal.is_session(today):
        kind = "weekend" if today.weekday() >= 5 else "holiday"
        return None, f"{today} is not an NYSE session ({kind}); nothing closed today"
    close = cal.close_utc(today)
    if now < cal.open_utc(today):
        return None, f"{today} has not opened yet (opens at {_local(cal.open_utc(today))})"
    if now < close:
        early = ", early close" if cal.is_early_close(today) else ""
        return None, f"{today} is still trading (closes at {_local(close)}{early})"
    if cal.is_early_close(today):
        return None, (
            f"{today} closed early at {_local(close)}; its run was requested by the tick after "
            "the early close"
        )
    return None, (
        f"{today} closed at {_local(close)}, more than {CLOSE_WINDOW} ago; daily_catch_up covers "
        "sessions a tick missed"
    )


@dg.schedule(
    name="daily_close",
    cron_schedule=CLOSE_CRONS,
    execution_timezone=str(EXCHANGE_TZ),
    target=CLOSE_SELECTION,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "After each NYSE close (16:15 ET, or 13:15 ET on early-close days), materialize the "
        "session that just closed: raw -> gold for daily bars plus company profiles and symbols, "
        "one run (run key close:<session>). Holidays and weekends skip; sessions come from the "
        "exchange calendar, not Dagster's last partition. RUNNING by default: one provider request "
        "per ticker batch per day."
    ),
)
def daily_close_schedule(context: dg.ScheduleEvaluationContext, market_data: MarketDataResource):
    now = automation_now(market_data, context.scheduled_execution_time)
    session, reason = session_to_close(now, first_session(context))
    if session is None:
        return dg.SkipReason(reason)
    context.log.info(f"requesting the close run: {reason}")
    return dg.RunRequest(
        run_key=f"close:{session}",
        partition_key=session.isoformat(),
        tags={AUTOMATION_TAG: "close"},
    )


# -- catch-up ----------------------------------------------------------------------------------
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
        now = automation_now(market_data)
        window = lookback_window(now, lookback_sessions, first_session(context))
        if not window:
            return dg.SkipReason("no closed session in the lookback window yet")
        instance = context.instance
        materialized = instance.get_materialized_partitions(RAW_DAILY)
        if not materialized:
            return dg.SkipReason(
                "raw/daily_bars was never materialized: launch the initial history backfill "
                "(the catch-up repairs a running deployment, it does not initialize one)"
            )
        anchor = dt.date.fromisoformat(min(materialized))
        candidates = [s for s in window if s >= anchor]
        keys = partitioned_daily_keys(context)
        done = sessions_done(instance, keys, candidates)
        missing = [s for s in candidates if s not in done]
        if not missing:
            return dg.SkipReason(
                f"every daily asset is materialized for {window[0]}..{window[-1]} "
                f"({len(window)} sessions)"
            )
        first, last = missing[0], missing[-1]
        for run in active_runs(instance):
            span = run_sessions(run)
            if run_touches(run, keys) and span and span[0] <= last and first <= span[1]:
                return dg.SkipReason(
                    f"{len(missing)} session(s) {first}..{last} missing, but run {run.run_id} "
                    f"({span[0]}..{span[1]}) is in progress ({run.status.value.lower()}); "
                    "waiting for it"
                )
        backfills = active_backfills_touching(instance, keys)
        if backfills:
            return dg.SkipReason(
                f"{len(missing)} session(s) missing, but backfill(s) {', '.join(backfills)} are "
                "in progress; waiting for them"
            )

        state = json.loads(context.cursor) if context.cursor else {}
        span_key = f"{first}..{last}"
        attempts = int(state.get("attempts", 0)) if state.get("range") == span_key else 0
        if attempts:
            wait = min(RETRY_BASE_SECONDS * 2 ** (attempts - 1), RETRY_MAX_SECONDS)
            elapsed = time.time() - float(state.get("requested_at", 0))
            if elapsed < wait:
                return dg.SkipReason(
                    f"{span_key} was requested {attempts} time(s) and is still missing; next "
                    f"attempt in {int(wait - elapsed)} s (see the run failure alerts)"
                )
        number = int(state.get("n", 0)) + 1
        context.update_cursor(
            json.dumps(
                {
                    "n": number,
                    "range": span_key,
                    "attempts": attempts + 1,
                    "requested_at": time.time(),
                }
            )
        )
        context.log.info(
            f"catching up {len(missing)} session(s) in {span_key}: "
            + ", ".join(s.isoformat() for s in missing)
        )
        return dg.RunRequest(
            # The request number: a tick re-evaluated after a crash cannot launch twice.
            run_key=f"catch_up:{number}",
            tags={
                AUTOMATION_TAG: "catch_up",
                **range_tags(first, last),
                "marketflow/missing_sessions": str(len(missing)),
            },
        )

    return daily_catch_up
