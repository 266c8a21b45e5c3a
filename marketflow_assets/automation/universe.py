"""Universe changes: new tickers get their history, removed tickers stop being fetched.

`universe_changes` reads the universe the way every run does (MARKETFLOW_TICKERS: a comma list,
`@path` to a file, or the built-in file) and compares it with the one in its cursor.

- Added tickers: one run per batch of up to 100 tickers over every session from the first
  partition (MARKETFLOW_START_DATE) through the latest closed session, daily + reference path,
  scoped with the `marketflow/tickers` run tag: raw asks the provider only for those tickers
  (and only what the lake is missing), every layer replaces only their rows, profiles are
  fetched for them and silver/symbols is rebuilt (in_universe).
- Removed tickers: nothing is deleted (their history stays queryable); runs stop fetching them
  because every run reads the universe; silver/symbols is rebuilt so `in_universe` flips.

The first evaluation records the universe without launching anything (the initial history is a
backfill a person launches). A change waits while a run or backfill building daily bars is in
progress (its checks compare raw, bronze and silver of its sessions). Run keys come from the change itself (previous -> current
universe), so a tick re-evaluated after a crash cannot launch twice. An unreadable universe
fails the tick with the error and keeps the cursor. RUNNING by default: it only reads a file.
"""

import datetime as dt
import json

import dagster as dg

from marketflow_assets.automation.common import (
    AUTOMATION_TAG,
    CLOSE_SELECTION,
    SILVER_SYMBOLS,
    automation_now,
    batches,
    daily_work_in_progress,
    describe_tickers,
    digest,
    first_session,
    latest_closed,
    range_tags,
    tickers_tag,
)
from marketflow_assets.resources import MarketDataResource, UniverseResource
from marketflow_assets.tickers import universe_source_path

UNIVERSE_INTERVAL_SECONDS = 60
HISTORY_SELECTION = CLOSE_SELECTION  # daily + reference: silver/symbols is a reference asset


def universe_origin(spec: str | None) -> str:
    path = universe_source_path(spec)
    if path is not None:
        return f"file {path}"
    return "MARKETFLOW_TICKERS" if spec else "the built-in universe file"


def universe_requests(
    previous: list[str], current: list[str], now: dt.datetime, first: dt.date
) -> tuple[list[dg.RunRequest], list[str], list[str]]:
    """Run requests for a change of universe, and the added and removed tickers."""
    before, after = set(previous), set(current)
    added = [t for t in current if t not in before]
    removed = sorted(before - after)
    change = digest(sorted(before), sorted(after))
    requests: list[dg.RunRequest] = []
    latest = latest_closed(now)
    start = first
    if added and latest is not None and latest >= start:
        for i, batch in enumerate(batches(added)):
            requests.append(
                dg.RunRequest(
                    run_key=f"universe:{change}:add:{i}",
                    tags={
                        AUTOMATION_TAG: "universe",
                        **range_tags(start, latest),
                        **tickers_tag(batch),
                        "marketflow/change": f"added {describe_tickers(batch)}",
                    },
                )
            )
    if removed and not requests:
        # Nothing to fetch: only silver/symbols.in_universe changes.
        requests.append(
            dg.RunRequest(
                run_key=f"universe:{change}:symbols",
                asset_selection=[SILVER_SYMBOLS],
                tags={
                    AUTOMATION_TAG: "universe",
                    "marketflow/change": f"removed {describe_tickers(removed)}",
                },
            )
        )
    return requests, added, removed


@dg.sensor(
    name="universe_changes",
    target=HISTORY_SELECTION,
    minimum_interval_seconds=UNIVERSE_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Watches the universe (MARKETFLOW_TICKERS: @file, comma list, or the built-in file). An "
        "added ticker gets its full history (first partition -> latest closed session), daily + "
        "reference path, in one run scoped to it (run tag marketflow/tickers); a removed ticker "
        "keeps its history, stops being fetched, and silver/symbols is rebuilt so in_universe "
        "flips. The cursor holds the universe last seen. RUNNING by default: it only reads a file."
    ),
)
def universe_sensor(
    context: dg.SensorEvaluationContext,
    universe: UniverseResource,
    market_data: MarketDataResource,
):
    current = universe.symbols()  # an invalid universe fails the tick with the reason
    origin = universe_origin(universe.tickers)
    if context.cursor is None:
        context.update_cursor(json.dumps({"tickers": current}))
        return dg.SkipReason(
            f"watching {len(current)} tickers from {origin}; later changes are acted on"
        )
    previous = json.loads(context.cursor)["tickers"]
    if previous == current or set(previous) == set(current):
        return dg.SkipReason(f"universe unchanged ({len(current)} tickers from {origin})")
    busy = daily_work_in_progress(context.instance)
    if busy:
        return dg.SkipReason(f"universe changed; waiting for {busy} to finish")
    requests, added, removed = universe_requests(
        previous, current, automation_now(market_data), first_session(context)
    )
    context.update_cursor(json.dumps({"tickers": current}))
    context.log.info(
        f"universe from {origin}: added {describe_tickers(added) or 'none'}; "
        f"removed {describe_tickers(removed) or 'none'}"
    )
    if not requests:
        return dg.SkipReason("universe changed, but no session has closed yet")
    return requests
