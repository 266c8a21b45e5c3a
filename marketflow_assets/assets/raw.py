"""Raw layer: provider payloads, unchanged, landed in the lake (local folder or S3).

Raw assets decide what to ask the provider for (only what the lake is missing, unless a refresh
is configured) and hand the responses to the raw IO manager, which writes immutable objects
and a manifest per fetch.
"""

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
import pandas as pd

from marketflow_assets import cadence, fetch_plan
from marketflow_assets.calendar import EXCHANGE, EXCHANGE_TZ, exchange_calendar
from marketflow_assets.exchanges import mics_of
from marketflow_assets.ingestion.landing import land_dropped_files
from marketflow_assets.partitions import (
    ensure_sessions_opened,
    sessions_of,
    sessions_partitions_def,
)
from marketflow_assets.resources import MarketDataResource, UniverseResource, ticker_scope
from marketflow_assets.sources.base import (
    INTRADAY_LOOKBACK_DAYS,
    INTRADAY_MAX_DAYS_PER_REQUEST,
    BarsQuery,
    Payload,
    ProviderError,
    TransientProviderError,
)
from marketflow_assets.storage.lake import LakeResource
from marketflow_assets.storage.raw_io_manager import Landing, RawLanding
from marketflow_assets.tickers import InvalidTickerError
from marketflow_assets.transforms.payloads import (
    bar_dates,
    corporate_action_events,
    iso_dates,
    minute_session_dates,
    session_dates,
)

# Whole-step retries for provider outages that outlast the per-request backoff. Permanent
# problems (bad files, unknown symbols, closed windows) fail at once: see `fail_fast`.
PROVIDER_RETRY_POLICY = dg.RetryPolicy(
    max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


@contextmanager
def fail_fast() -> Iterator[None]:
    """Turn errors that a retry cannot fix into a Failure that names them and skips retries."""
    try:
        yield
    except TransientProviderError:
        raise
    except (ProviderError, InvalidTickerError) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc


class RawFetchConfig(dg.Config):
    refresh: bool = False
    """Fetch every requested ticker and session again, even those the lake already holds."""
    file_batch: str | None = None
    """Land the dropped files of this batch (landing/claimed/<batch>/, set by the file_drops
    sensor) as source 'file' instead of asking the provider."""


def run_tickers(context: dg.AssetExecutionContext, universe: UniverseResource) -> list[str]:
    scope = ticker_scope(context)
    return list(scope) if scope is not None else universe.symbols()


@dg.asset(
    key=["raw", "daily_bars"],
    tags=cadence.DAILY,
    group_name="raw",
    kinds={"python", "parquet"},
    partitions_def=sessions_partitions_def,
    backfill_policy=dg.BackfillPolicy.single_run(),
    io_manager_key="raw_io_manager",
    retry_policy=PROVIDER_RETRY_POLICY,
    description=(
        "Daily OHLCV payloads exactly as the provider served them (Yahoo columns, as-of basis), "
        "one immutable Parquet object per session and fetch plus a manifest per fetch. Fetches "
        "only what the lake is missing for the universe; one request per ticker group and range."
    ),
)
def raw_daily_bars(
    context: dg.AssetExecutionContext,
    config: RawFetchConfig,
    market_data: MarketDataResource,
    universe: UniverseResource,
    lake: LakeResource,
) -> RawLanding:
    with fail_fast():
        if config.file_batch:
            now = market_data.get_source().now()
            return land_dropped_files(context, config.file_batch, now, lake)
        return _land_daily_bars(context, config, market_data, universe, lake)


def _land_daily_bars(
    context: dg.AssetExecutionContext,
    config: RawFetchConfig,
    market_data: MarketDataResource,
    universe: UniverseResource,
    lake: LakeResource,
) -> RawLanding:
    source = market_data.get_source()
    sessions = sessions_of(context)
    now = source.now()
    ensure_sessions_opened(sessions, now)
    tickers = run_tickers(context, universe)
    manifests = lake.raw().manifests(source.name, "daily_bars")
    groups, already = fetch_plan.plan(manifests, tickers, sessions, refresh=config.refresh)

    landings: list[Landing] = []
    errors: dict[str, str] = {}
    for group in groups:
        # One session before the range (on each ticker's own exchange) gives every dividend its
        # previous close; asking through `now` brings the splits and dividends that re-base
        # these bars (Yahoo serves bars as of the fetch). Only the run's sessions are landed.
        calendars = [exchange_calendar(mic) for mic in mics_of(group.tickers) or {EXCHANGE}]
        first = min(c.previous_session(group.first) or group.first for c in calendars)
        latest = max(c.latest_opened_session(now) or group.last for c in calendars)
        query = BarsQuery(group.tickers, first, max(latest, group.last), "1d")
        payload = market_data.fetch_bars(query)
        errors.update(payload.errors)
        landings.append(_daily_landing(payload, group))
        context.log.info(
            f"{source.name}: {len(group.tickers)} ticker(s) {group.first}..{group.last}: "
            f"{len(payload.frame)} rows, {len(payload.errors)} without data"
        )

    landed_rows = sum(
        int(landing.partitions.notna().sum())
        for landing in landings
        if landing.partitions is not None
    )
    if groups and landed_rows == 0 and errors:
        raise dg.Failure(
            description=f"the provider returned no data for any requested ticker: {_describe_errors(errors)}",
            allow_retries=False,
        )
    if errors:
        context.log.warning(f"no data for {len(errors)} ticker(s): {_describe_errors(errors)}")
    return RawLanding(
        dataset="daily_bars",
        landings=landings,
        metadata={
            "source": source.name,
            "provider_clock": now.isoformat(),
            "sessions": f"{sessions[0]}..{sessions[-1]} ({len(sessions)})" if sessions else "none",
            "tickers_requested": len(tickers),
            "pairs_already_landed": already,
            "provider_requests": len(groups),
            "refresh": config.refresh,
            "tickers_without_data": dg.MetadataValue.json(errors),
        },
    )


def _daily_landing(payload: Payload, group: fetch_plan.FetchGroup) -> Landing:
    """Rows of the group's sessions go to their session partition; the rest are context."""
    frame = payload.frame
    if frame.empty:
        return Landing(
            payload, partitions=pd.Series([], dtype=object), landed=(group.first, group.last)
        )
    sessions = session_dates(bar_dates(frame["Date"], frame["Ticker"]), frame["Ticker"])
    in_range = sessions.between(pd.Timestamp(group.first), pd.Timestamp(group.last))
    in_group = frame["Ticker"].isin(group.tickers)
    keys = iso_dates(sessions).where(in_range & in_group)
    return Landing(
        payload,
        partitions=keys,
        events=corporate_action_events(frame),
        landed=(group.first, group.last),
    )


def _describe_errors(errors: dict[str, str], limit: int = 10) -> str:
    shown = "; ".join(f"{t}: {e}" for t, e in list(errors.items())[:limit])
    return shown + (f"; ... ({len(errors) - limit} more)" if len(errors) > limit else "")


class ProfilesFetchConfig(dg.Config):
    refresh: bool = False
    """Fetch every ticker's profile again."""
    max_age_days: int = 7
    """Profiles older than this (provider clock) are fetched again."""


@dg.asset(
    key=["raw", "company_profiles"],
    tags=cadence.REFERENCE,
    group_name="raw",
    kinds={"python", "json"},
    backfill_policy=dg.BackfillPolicy.single_run(),
    io_manager_key="raw_io_manager",
    retry_policy=PROVIDER_RETRY_POLICY,
    description=(
        "Company profile records (Yahoo `info`) as served, one JSON object per fetch. Fetches "
        "tickers with no profile younger than `max_age_days`."
    ),
)
def raw_company_profiles(
    context: dg.AssetExecutionContext,
    config: ProfilesFetchConfig,
    market_data: MarketDataResource,
    universe: UniverseResource,
    lake: LakeResource,
) -> RawLanding:
    with fail_fast():
        return _land_profiles(context, config, market_data, universe, lake)


def _land_profiles(
    context: dg.AssetExecutionContext,
    config: ProfilesFetchConfig,
    market_data: MarketDataResource,
    universe: UniverseResource,
    lake: LakeResource,
) -> RawLanding:
    source = market_data.get_source()
    now = source.now()
    tickers = run_tickers(context, universe)
    fresh_after = now - dt.timedelta(days=config.max_age_days)
    fresh = {
        t
        for m in lake.raw().manifests(source.name, "company_profiles")
        if m.fetched_at >= fresh_after
        for t in m.ok_tickers
    }
    missing = tuple(tickers if config.refresh else [t for t in tickers if t not in fresh])
    landings = []
    if missing:
        payload = market_data.fetch_profiles(missing)
        if payload.errors:
            context.log.warning(
                f"no profile for {len(payload.errors)} ticker(s): {_describe_errors(payload.errors)}"
            )
        landings.append(Landing(payload, partition=now.astimezone(EXCHANGE_TZ).date().isoformat()))
    return RawLanding(
        dataset="company_profiles",
        landings=landings,
        metadata={
            "source": source.name,
            "tickers_requested": len(tickers),
            "tickers_fetched": len(missing),
            "tickers_without_profile": dg.MetadataValue.json(
                landings[0].payload.errors if landings else {}
            ),
        },
    )


class IntradayFetchConfig(dg.Config):
    refresh: bool = False
    """Fetch every requested session again from its open, ignoring what raw holds."""


@dg.asset(
    key=["raw", "intraday_bars_1m"],
    tags=cadence.INTRADAY,
    group_name="raw",
    kinds={"python", "parquet"},
    partitions_def=sessions_partitions_def,
    backfill_policy=dg.BackfillPolicy.single_run(),
    io_manager_key="raw_io_manager",
    retry_policy=PROVIDER_RETRY_POLICY,
    description=(
        "One-minute bars exactly as served, regular hours. While a session trades, each "
        "materialization fetches only bars from each ticker's watermark (the last bar landed, "
        "which may still have been forming) and lands them as a new object. The provider keeps "
        "30 days of 1m history and serves 7 days per request: ranges are fetched in 7-day "
        "chunks, and older sessions fail fast with the window that is still available."
    ),
)
def raw_intraday_bars_1m(
    context: dg.AssetExecutionContext,
    config: IntradayFetchConfig,
    market_data: MarketDataResource,
    universe: UniverseResource,
    lake: LakeResource,
) -> RawLanding:
    with fail_fast():
        return _land_intraday_bars(context, config, market_data, universe, lake)


def _land_intraday_bars(
    context: dg.AssetExecutionContext,
    config: IntradayFetchConfig,
    market_data: MarketDataResource,
    universe: UniverseResource,
    lake: LakeResource,
) -> RawLanding:
    source = market_data.get_source()
    now = source.now()
    sessions = sessions_of(context)
    ensure_sessions_opened(sessions, now)
    first_available, last_available = source.intraday_window()
    unavailable = [s for s in sessions if s < first_available]
    if unavailable:
        message = (
            f"{len(unavailable)} session(s) {unavailable[0]}..{unavailable[-1]} are older than the "
            f"provider's one-minute history ({INTRADAY_LOOKBACK_DAYS} days): 1m bars can be "
            f"fetched for {first_available}..{last_available} only"
        )
        if not whole_graph_run(context):
            raise dg.Failure(description=message, allow_retries=False)
        # A whole-graph run (e.g. `--select '*'` over an old range) still builds the daily
        # layers; the intraday sessions it cannot have are skipped, loudly.
        context.log.warning(f"{message}; skipping them in this whole-graph run")
        sessions = [s for s in sessions if s >= first_available]

    tickers = run_tickers(context, universe)
    manifests = lake.raw().manifests(source.name, "intraday_bars_1m")
    have = (
        fetch_plan.covered(manifests, tickers, sessions)
        if not config.refresh
        else fetch_plan.nothing_covered(tickers, sessions)
    )
    marks = {} if config.refresh else fetch_plan.watermarks(manifests)
    errors: dict[str, str] = {}
    metadata: dict[str, Any] = {
        "source": source.name,
        "provider_clock": now.isoformat(),
        "sessions_fetched": len(sessions),
        "sessions_outside_provider_window": dg.MetadataValue.json(
            [s.isoformat() for s in unavailable]
        ),
        "provider_requests": 0,
    }

    def fetch(group: tuple[str, ...], chunk: list[dt.date], since: dt.datetime | None) -> Landing:
        payload = market_data.fetch_bars(BarsQuery(group, chunk[0], chunk[-1], "1m", since=since))
        metadata["provider_requests"] += 1
        errors.update(payload.errors)
        frame = payload.frame
        keys = minute_session_dates(frame["Ticker"], frame["Datetime"]).dt.strftime("%Y-%m-%d")
        keys = keys.where(keys.isin([s.isoformat() for s in chunk]))
        return Landing(
            payload, partitions=keys, landed=(chunk[0], chunk[-1]), watermark_column="Datetime"
        )

    def landings() -> Iterator[Landing]:
        # Lazily, one request at a time: the IO manager lands (and frees) each response before
        # the next is fetched, so a range run holds one request's bars (<= 7 days), not the
        # range's. A failure keeps the fetches already landed (each one is complete, committed
        # by its manifest) and a retry asks only for what is still missing.
        with fail_fast():
            for chunk in fetch_plan.chunks(sessions, INTRADAY_MAX_DAYS_PER_REQUEST):
                lo, hi = sessions.index(chunk[0]), sessions.index(chunk[-1]) + 1
                missing = [t for i, t in enumerate(tickers) if not have[i, lo:hi].all()]
                # One session in progress (polling): each ticker resumes at its watermark.
                by_since: dict[dt.datetime | None, list[str]] = {}
                for ticker in missing:
                    since = marks.get((ticker, chunk[0])) if len(chunk) == 1 else None
                    by_since.setdefault(since, []).append(ticker)
                for since, group in by_since.items():
                    yield fetch(tuple(group), chunk, since)
        metadata["tickers_without_data"] = dg.MetadataValue.json(errors)
        if errors:
            context.log.warning(
                f"no 1m data for {len(errors)} ticker(s): {_describe_errors(errors)}"
            )

    return RawLanding(dataset="intraday_bars_1m", landings=landings(), metadata=metadata)


def whole_graph_run(context: dg.AssetExecutionContext) -> bool:
    """Whether the run also builds the daily layers (not an intraday-only run)."""
    selection = context.run.asset_selection
    # No explicit selection (None, or empty for in-process runs): the whole asset job runs.
    return not selection or dg.AssetKey(["raw", "daily_bars"]) in selection
