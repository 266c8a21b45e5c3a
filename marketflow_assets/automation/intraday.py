"""While the market is open: poll the current session's one-minute path every N minutes.

`intraday_poll` ticks every MARKETFLOW_INTRADAY_POLL_MINUTES (default 5) minutes. While
`open_session(now)` is a session it requests that session's partition of the intraday path
(raw 1m -> bronze -> silver -> gold intraday marts): raw resumes each ticker at its watermark, so
a poll fetches only the new minutes. Outside regular hours (the calendar knows early closes: the
29 November 2024 session stops at 13:00) it requests ONE final poll of the session that closed,
to land its last minutes, then skips until the next open. A poll is skipped while the previous
poll of the session is still queued or running (polls never pile up).

STOPPED by default: it calls the provider every few minutes, so turning it on is a decision
(UI: Automation -> intraday_poll -> Start). The cursor holds the last poll requested.
"""

import datetime as dt

import dagster as dg

from marketflow_assets.automation.common import (
    AUTOMATION_TAG,
    INTRADAY_SELECTION,
    PARTITION_TAG,
    active_runs,
    automation_now,
    first_session,
)
from marketflow_assets.calendar import EXCHANGE_TZ, xnys
from marketflow_assets.resources import MarketDataResource

# The final poll waits this long after the close, so the last minute bar is complete upstream.
FINAL_POLL_DELAY = dt.timedelta(minutes=2)


def poll_decision(
    now: dt.datetime, poll_minutes: int, first: dt.date
) -> tuple[str | None, dt.date | None, str]:
    """(poll key, session, why): the poll due at `now`, or (None, None, reason to skip)."""
    cal = xnys()
    session = cal.open_session(now)
    if session is not None:
        opened = cal.open_utc(session)
        slot = int((now - opened).total_seconds() // (poll_minutes * 60))
        closes = cal.close_utc(session).astimezone(EXCHANGE_TZ)
        return (
            f"{session}:{slot}",
            session,
            f"{session} is trading (poll {slot}, closes {closes:%H:%M %Z})",
        )
    last = cal.latest_closed_session(now)
    if last is None or last < first:
        return None, None, "no session has closed yet"
    close = cal.close_utc(last)
    if now < close + FINAL_POLL_DELAY:
        return (
            None,
            None,
            f"{last} just closed; the final poll follows at close + {FINAL_POLL_DELAY}",
        )
    return (
        f"{last}:final",
        last,
        f"final poll of {last} (closed {close.astimezone(EXCHANGE_TZ):%H:%M %Z})",
    )


def market_closed_reason(now: dt.datetime) -> str:
    cal = xnys()
    today = now.astimezone(EXCHANGE_TZ).date()
    if not cal.is_session(today):
        kind = "weekend" if today.weekday() >= 5 else "holiday"
        return f"market closed: {today} is not an NYSE session ({kind})"
    if now < cal.open_utc(today):
        return f"market closed: {today} opens at {cal.open_utc(today).astimezone(EXCHANGE_TZ):%H:%M %Z}"
    early = " (early close)" if cal.is_early_close(today) else ""
    return (
        f"market closed: {today} closed at "
        f"{cal.close_utc(today).astimezone(EXCHANGE_TZ):%H:%M %Z}{early}"
    )


def build_intraday_sensor(poll_minutes: int) -> dg.SensorDefinition:
    poll_minutes = max(1, int(poll_minutes))

    @dg.sensor(
        name="intraday_poll",
        target=INTRADAY_SELECTION,
        minimum_interval_seconds=poll_minutes * 60,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=(
            f"Every {poll_minutes} min (MARKETFLOW_INTRADAY_POLL_MINUTES) while the NYSE is open "
            "(exchange calendar: holidays, early closes at 13:00), materialize the open session's "
            "intraday path (1m bars raw -> gold); after the close, one final poll lands the last "
            "minutes. Skips while the previous poll is still running. STOPPED by default: it "
            "calls the provider every few minutes, turn it on deliberately."
        ),
    )
    def intraday_poll(context: dg.SensorEvaluationContext, market_data: MarketDataResource):
        now = automation_now(market_data)
        key, session, why = poll_decision(now, poll_minutes, first_session(context))
        if key is None or session is None:
            return dg.SkipReason(why)
        if context.cursor == key:
            if key.endswith(":final"):
                return dg.SkipReason(f"{market_closed_reason(now)}; {session} had its final poll")
            return dg.SkipReason(f"{why}: already polled in this slot")
        busy = active_runs(
            context.instance,
            tags={AUTOMATION_TAG: "intraday", PARTITION_TAG: session.isoformat()},
        )
        if busy:
            return dg.SkipReason(
                f"{why}: the previous poll (run {busy[0].run_id}) is still in progress "
                f"({busy[0].status.value.lower()})"
            )
        context.update_cursor(key)
        return dg.RunRequest(
            run_key=f"intraday:{key}",
            partition_key=session.isoformat(),
            tags={AUTOMATION_TAG: "intraday", "marketflow/poll": key.split(":", 1)[1]},
        )

    return intraday_poll
