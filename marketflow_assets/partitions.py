"""Session partitions: one Dagster partition per session, shared by every layer.

`DailyPartitionsDefinition` in exchange time whose exclusions are weekends plus every weekday
on which none of the universe's exchanges trades, so the partition keys are exactly the union of
their sessions (`exchanges.union_sessions`): the XNYS sessions for a US universe, unchanged; a
London holiday on which New York trades, or the reverse, is a partition for a mixed universe
(silver then aligns each ticker to its own exchange's sessions).

`end_offset=1` makes the current session a partition while it is still trading, which the
intraday assets need and which lets the daily close run target the session that just closed.
Known Dagster quirk (dagster-io/dagster#33551): on a weekend or holiday `end_offset=1` exposes
the *next* session early. Nothing here relies on Dagster's "last partition": schedules and
sensors derive the current session from the exchange calendar, and assets refuse sessions that
have not opened yet with an explanatory error (see `ensure_sessions_opened`).

Settings flow one way. Asset modules declare `partitions_def=sessions_partitions_def` at import,
where no Settings exist yet: that object is a placeholder. `build_definitions(settings)` builds
the real definition once, `sessions_partitions_def_for(settings)`, and `bind_sessions_partitions`
puts it in place of the placeholder on every asset and check (asset specs and check specs alike),
so nothing reads the environment at import and two Definitions with different settings can live
in one process. A new session-partitioned asset needs nothing more than the import:

    from marketflow_assets.partitions import sessions_partitions_def

    @dg.asset(partitions_def=sessions_partitions_def, ...)

(A warehouse table asset gets it from `assets/table_asset.py` when its contract has a
`partition_column`.)
"""

import datetime as dt
from collections.abc import Iterable

import dagster as dg
import numpy as np
import pandas as pd

from marketflow_assets.calendar import EXCHANGE, EXCHANGE_TZ, xnys
from marketflow_assets.exchanges import listing_of, union_sessions
from marketflow_assets.session_windows import SessionsPartitionsDefinition
from marketflow_assets.settings import Settings
from marketflow_assets.tickers import InvalidTickerError, load_universe

WEEKENDS_CRON = "0 0 * * 0,6"
INTRADAY_CHUNK_SESSIONS = 1
"""Sessions of one-minute bars the SQL layers (silver, gold) compute per query in a range run
(500 tickers: ~195k bars a session), so a run's memory is that of one chunk however long its
range; the chunks are staged and replace the range in one transaction (`TableWrite`). One
session per query measured lowest in memory (a 5-session query held ~0.9 GB more) and as fast.
Bronze also goes one session at a time, raw one provider request (at most 7 days) at a time."""


class SessionNotOpenError(dg.Failure):
    """A partition for a session that has not opened yet was asked for."""


def build_sessions_partitions_def(
    start_date: dt.date, exchanges: frozenset[str] = frozenset({EXCHANGE})
) -> dg.DailyPartitionsDefinition:
    """Partitions = the sessions of `exchanges` (MICs) from `start_date`, which must be one."""
    cal = xnys()
    if exchanges == {EXCHANGE}:
        if not cal.is_session(start_date):
            raise ValueError(
                f"MARKETFLOW_START_DATE={start_date} is not an NYSE session; the next one is "
                f"{cal.next_session(start_date)}"
            )
        sessions = pd.DatetimeIndex(pd.to_datetime(cal.sessions_in_range(start_date, cal.last)))
    else:
        union = pd.DatetimeIndex(union_sessions(exchanges).astype("datetime64[ns]"))
        sessions = union[(union >= pd.Timestamp(start_date)) & (union <= pd.Timestamp(cal.last))]
        if sessions.empty or sessions[0] != pd.Timestamp(start_date):
            nxt = sessions[0].date() if not sessions.empty else None
            raise ValueError(
                f"MARKETFLOW_START_DATE={start_date} is not a session of any of "
                f"{', '.join(sorted(exchanges))}; the next one is {nxt}"
            )
    # Monday to Friday in numpy: pandas' bdate_range steps through the days in Python (~0.1-0.4 s).
    days = np.arange(start_date, cal.last + dt.timedelta(days=1), dtype="datetime64[D]")
    weekdays = pd.DatetimeIndex(days[np.is_busday(days)].astype("datetime64[ns]"))
    holidays = weekdays.difference(sessions)
    # Its windows are computed once (session_windows.py): Dagster's iterators over exclusions
    # cost a range run seconds per step.
    return SessionsPartitionsDefinition(
        start_date=start_date.isoformat(),
        timezone=str(EXCHANGE_TZ),
        end_offset=1,
        exclusions=[WEEKENDS_CRON, *(d.to_pydatetime() for d in holidays)],
    )


def universe_exchanges(settings: Settings) -> frozenset[str]:
    """The MICs of the universe's exchanges (`exchanges.listing_of`, by Yahoo suffix).

    A universe that cannot be read (an invalid ticker, a missing file) counts as US here: the
    code location must still load so the UI can show the runs that fail naming the ticker."""
    try:
        return frozenset(listing_of(t).mic for t in load_universe(settings.tickers)) or frozenset(
            {EXCHANGE}
        )
    except InvalidTickerError:  # incl. an unknown exchange suffix (exchanges.UnknownExchangeError)
        return frozenset({EXCHANGE})


def sessions_partitions_def_for(settings: Settings) -> dg.DailyPartitionsDefinition:
    """The session partitions of a deployment: the one function from Settings to partitions."""
    return build_sessions_partitions_def(settings.start_date, universe_exchanges(settings))


sessions_partitions_def = dg.DailyPartitionsDefinition(
    start_date=Settings.start_date.isoformat(), timezone=str(EXCHANGE_TZ), end_offset=1
)
"""Declaration-time placeholder for the session partitions (see the module docstring). It has no
exclusions, so it never equals a real sessions definition (which always excludes weekends)."""

AssetsLike = dg.AssetsDefinition | dg.AssetSpec | dg.SourceAsset


def bind_sessions_partitions(
    assets: Iterable[AssetsLike], partitions_def: dg.PartitionsDefinition
) -> list[AssetsLike]:
    """`assets` (assets, multi-assets, dbt assets, asset checks, specs) with every placeholder
    `sessions_partitions_def` replaced by `partitions_def`; anything else is returned as is."""
    return [_bind(asset, partitions_def) for asset in assets]


def _is_placeholder(spec: dg.AssetSpec | dg.AssetCheckSpec) -> bool:
    return spec.partitions_def is not None and spec.partitions_def == sessions_partitions_def


def _bind(asset: AssetsLike, partitions_def: dg.PartitionsDefinition) -> AssetsLike:
    if isinstance(asset, dg.AssetSpec):
        return (
            asset.replace_attributes(partitions_def=partitions_def)
            if _is_placeholder(asset)
            else asset
        )
    if not isinstance(asset, dg.AssetsDefinition) or not (
        any(map(_is_placeholder, asset.specs)) or any(map(_is_placeholder, asset.check_specs))
    ):
        return asset
    specs = [
        s.replace_attributes(partitions_def=partitions_def) if _is_placeholder(s) else s
        for s in asset.specs
    ]
    check_specs = {
        name: c._replace(partitions_def=partitions_def) if _is_placeholder(c) else c
        for name, c in asset.node_check_specs_by_output_name.items()
    }
    # Dagster has no public call that swaps the partitions of a built asset together with those
    # of its check specs (`map_asset_specs` covers asset specs only, and an AssetsDefinition must
    # have one partitions definition across both), so rebuild it from its own attributes.
    return asset.__class__.dagster_internal_init(
        **{**asset.get_attributes_dict(), "specs": specs, "check_specs_by_output_name": check_specs}
    )


def sessions_of(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> list[dt.date]:
    """The sessions a (possibly range) run targets, in order."""
    if context.has_partition_key_range:
        # The definition's own keys (the union of the universe's exchanges' sessions) within
        # the range's bounds: Dagster extends a range whose end is not a key (a holiday in
        # range tags) to the next key, a session the run was not asked for.
        bounds = context.partition_key_range
        return [
            dt.date.fromisoformat(k)
            for k in context.partition_keys
            if bounds.start <= k <= bounds.end
        ]
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
