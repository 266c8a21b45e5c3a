"""Session partitions: one Dagster partition per NYSE session, shared by every layer.

`DailyPartitionsDefinition` in exchange time whose exclusions are weekends plus every weekday
that is not an XNYS session, so the partition keys are exactly the sessions.

`end_offset=1` makes the current session a partition while it is still trading, which the
intraday assets need and which lets the daily close run target the session that just closed.
Known Dagster quirk (dagster-io/dagster#33551): on a weekend or holiday `end_offset=1` exposes
the *next* session early. Nothing here relies on Dagster's "last partition": schedules and
sensors derive the current session from the exchange calendar, and assets refuse sessions that
have not opened yet with an explanatory error (see `ensure_sessions_opened`).
"""

import datetime as dt
import os

import dagster as dg
import pandas as pd

from marketflow_assets.calendar import EXCHANGE_TZ, xnys
from marketflow_assets.settings import Settings

WEEKENDS_CRON = "0 0 * * 0,6"
INTRADAY_CHUNK_SESSIONS = 1
"""Sessions of one-minute bars the SQL layers (silver, gold) compute per query in a range run
(500 tickers: ~195k bars a session), so a run's memory is that of one chunk however long its
range; the chunks are staged and replace the range in one transaction (`TableWrite`). One
session per query measured lowest in memory (a 5-session query held ~0.9 GB more) and as fast.
Bronze also goes one session at a time, raw one provider request (at most 7 days) at a time."""


class SessionNotOpenError(dg.Failure):
    """A partition for a session that has not opened yet was asked for."""


def build_sessions_partitions_def(start_date: dt.date) -> dg.DailyPartitionsDefinition:
    cal = xnys()
    if not cal.is_session(start_date):
        raise ValueError(
            f"MARKETFLOW_START_DATE={start_date} is not an NYSE session; the next one is "
            f"{cal.next_session(start_date)}"
        )
    weekdays = pd.bdate_range(start_date, cal.last)
    sessions = pd.DatetimeIndex(pd.to_datetime(cal.sessions_in_range(start_date, cal.last)))
    holidays = weekdays.difference(sessions)
    return dg.DailyPartitionsDefinition(
        start_date=start_date.isoformat(),
        timezone=str(EXCHANGE_TZ),
        end_offset=1,
        exclusions=[WEEKENDS_CRON, *(d.to_pydatetime() for d in holidays)],
    )


def _start_date_from_env() -> dt.date:
    # Only the start date is structural (it shapes the partitions); everything else is read
    # into resources, so tests and the demo can point the same definitions anywhere.
    return Settings.from_env(os.environ).start_date


sessions_partitions_def = build_sessions_partitions_def(_start_date_from_env())


def sessions_of(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> list[dt.date]:
    """The sessions a (possibly range) run targets, in order."""
    if context.has_partition_key_range:
        key_range = context.partition_key_range
        return xnys().sessions_in_range(
            dt.date.fromisoformat(key_range.start), dt.date.fromisoformat(key_range.end)
        )
    if context.has_partition_key:
        return [dt.date.fromisoformat(context.partition_key)]
    return []


def ensure_sessions_opened(sessions: list[dt.date], now: dt.datetime) -> None:
    """Fail fast, before any provider call, if a run asks for sessions that have not opened."""
    cal = xnys()
    latest = cal.latest_opened_session(now)
    future = [s for s in sessions if latest is None or s > latest]
    if future:
        shown = ", ".join(s.isoformat() for s in future[:5]) + (" ..." if len(future) > 5 else "")
        raise SessionNotOpenError(
            allow_retries=False,
            description=(
                f"Session(s) {shown} have not opened yet (provider clock {now.isoformat()}; "
                f"next open {cal.open_utc(future[0]).astimezone(EXCHANGE_TZ):%Y-%m-%d %H:%M %Z}). "
                "Dagster lists the next session early on weekends and holidays "
                f"(dagster-io/dagster#33551); choose a range ending at {latest}."
            ),
        )
