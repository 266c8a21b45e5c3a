"""After the close: the new session raw -> gold (schedule `daily_close`).

`daily_close` fires at 13:15 and 16:15 exchange time on weekdays and asks the calendar whether a
session closed within the last two hours: 16:15 on a normal day, 13:15 on an early-close day
(13:00). Holidays, weekends and the second tick of an early-close day skip with the reason. The
run is one partition of the daily + reference path (run key `close:<session>`).

Sessions a tick missed (the deployment was down, a close run failed) are `daily_catch_up`'s, in
`catch_up.py`; it leaves the latest session to this schedule for `CLOSE_GRACE` after its close.
"""

import datetime as dt

import dagster as dg

from marketflow_assets.automation.common import (
    AUTOMATION_TAG,
    CLOSE_SELECTION,
    automation_now,
    first_session,
)
from marketflow_assets.calendar import EXCHANGE_TZ, xnys
from marketflow_assets.resources import MarketDataResource

# Evaluated 15 minutes after the early (13:00) and the regular (16:00) close, exchange time.
CLOSE_CRONS = ["15 13 * * 1-5", "15 16 * * 1-5"]
CLOSE_WINDOW = dt.timedelta(hours=2)
# The catch-up leaves the latest session to `daily_close` this long after its close.
CLOSE_GRACE = dt.timedelta(hours=1)


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
