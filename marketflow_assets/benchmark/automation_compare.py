"""Catching up missed sessions: the `daily_catch_up` range run vs declarative automation.

    python -m marketflow_assets.benchmark.automation_compare [--tickers N] [--missed N]

A test-sized deployment (simulator, fixed clock) has `--history` sessions of the daily +
reference path, then misses `--missed` sessions (the deployment was down). From copies of that
same state, each strategy brings the daily path up to date, and the figures are compared:

- `range`: what MarketFlow does. The real `daily_catch_up` sensor is ticked once; its one
  request (the missing range) is executed as one run.
- `eager_stock`: `AutomationCondition.eager()` on every asset of the daily + reference path,
  with `missing()` on the roots, in the latest partition as both ship: one tick, evaluated
  only, says how many of the missed sessions it requests at all.
- `eager_lookback`: the same conditions widened to the lookback window (so they do ask for every
  missed session); every run request of every tick is executed in this process, and the
  automation sensor ticks again, until it requests nothing.
- `emit_backfills`: the `eager_lookback` conditions with `emit_backfills=True` (the automation
  sensor's default): each tick's requests become one backfill, executed here as the backfill
  daemon executes assets with `BackfillPolicy.single_run()` and one partitions definition: one
  run over the range of the partitioned assets, then one for the unpartitioned ones (emulated in
  process; the daemon itself is not started).

The ticks are those of the automation daemon's evaluation (`AutomationTickEvaluationContext`,
which turns requested partitions into run requests or backfills; Dagster-internal).
Reported per strategy: runs, dbt invocations (executions of the `dbt_marts` step), sessions
caught up and wall time, with wall-time ratios to `range` (timings drift 2-4x on a shared
machine: compare ratios from one invocation only). Nothing is written outside a temporary folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from dagster._core.definitions.asset_daemon_cursor import AssetDaemonCursor
from dagster._core.definitions.automation_tick_evaluation_context import (
    AutomationTickEvaluationContext,
)

from marketflow_assets.automation.common import CLOSE_SELECTION, RAW_DAILY
from marketflow_assets.calendar import xnys
from marketflow_assets.definitions import build_definitions
from marketflow_assets.resources import build_resources
from marketflow_assets.settings import Settings

TICKERS = ("AAPL", "MSFT", "KO", "JPM", "^GSPC")
HISTORY_START = dt.date(2024, 4, 1)
DBT_STEP = "dbt_marts"
LOOKBACK = dt.timedelta(days=60)  # the widened conditions' window; > the missed sessions
MAX_TICKS = 50
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


@dataclasses.dataclass
class Outcome:
    strategy: str
    runs: int
    dbt_invocations: int
    sessions_caught_up: int
    seconds: float
    ok: bool
    note: str = ""


# -- the deployment ------------------------------------------------------------------------------
def sessions(history: int, missed: int) -> tuple[list[dt.date], list[dt.date]]:
    cal = xnys()
    days = cal.sessions_in_range(HISTORY_START, cal.offset(HISTORY_START, history + missed))
    return days[:history], days[history : history + missed]


def settings_for(home: Path, tickers: int, clock: dt.datetime) -> Settings:
    return Settings(
        home=home,
        source="simulator",
        tickers=",".join(TICKERS[:tickers]),
        simulator_now=clock,
        start_date=HISTORY_START,
    )


def evening_after(session: dt.date) -> dt.datetime:
    """Two hours after `session`'s close: the catch-up's grace for the close run has passed."""
    return xnys().close_utc(session) + dt.timedelta(hours=2)


@contextmanager
def instance_at(home: Path) -> Iterator[dg.DagsterInstance]:
    folder = home / "dagster_instance"
    folder.mkdir(parents=True, exist_ok=True)
    with dg.instance_for_test(temp_dir=str(folder)) as instance:
        yield instance


def execute(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    keys,
    *,
    partition: str | None = None,
    tags: dict[str, str] | None = None,
) -> dg.ExecuteInProcessResult:
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        asset_selection=list(keys),
        partition_key=partition,
        tags=tags or {},
        run_config=QUIET,
        instance=instance,
        raise_on_error=False,
    )


def dbt_invocations(result: dg.ExecuteInProcessResult) -> int:
    return sum(1 for e in result.all_events if e.is_step_start and e.step_key == DBT_STEP)


def daily_keys(defs: dg.Definitions) -> set[dg.AssetKey]:
    graph = defs.resolve_asset_graph()
    return CLOSE_SELECTION.resolve(graph)


def partitioned_done(instance: dg.DagsterInstance, missed: list[dt.date]) -> int:
    done = instance.get_materialized_partitions(RAW_DAILY)
    return sum(1 for s in missed if s.isoformat() in done)


# -- strategies ----------------------------------------------------------------------------------
def catch_up_range(settings: Settings, missed: list[dt.date]) -> Outcome:
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def("daily_catch_up")
    with instance_at(settings.home) as instance:
        start = time.perf_counter()
        with dg.build_sensor_context(
            instance=instance,
            definitions=defs,
            resources=build_resources(settings),
            sensor_name="daily_catch_up",
        ) as context:
            data = sensor.evaluate_tick(context)
        results = [
            execute(defs, instance, daily_keys(defs), tags=dict(r.tags)) for r in data.run_requests
        ]
        seconds = time.perf_counter() - start
        return Outcome(
            "range",
            len(results),
            sum(map(dbt_invocations, results)),
            partitioned_done(instance, missed),
            seconds,
            all(r.success for r in results),
            data.skip_message or "",
        )


def with_conditions(defs: dg.Definitions, lookback: dt.timedelta | None) -> dg.Definitions:
    """`defs` with declarative automation on the daily + reference path: roots `missing()`,
    everything else `eager()`; within the latest partition (stock) or `lookback`."""
    graph = defs.resolve_asset_graph()
    keys = daily_keys(defs)
    window = dg.AutomationCondition.in_latest_time_window(lookback)
    roots = {k for k in keys if not (graph.get(k).parent_keys & keys)}

    def condition(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.key not in keys:
            return spec
        if spec.key in roots:
            cond = (
                window
                & dg.AutomationCondition.missing()
                & ~dg.AutomationCondition.in_progress()
                & ~dg.AutomationCondition.any_deps_in_progress()
            ).with_label("missing in window")
        else:
            cond = dg.AutomationCondition.eager()
            if lookback is not None:
                cond = cond.replace("in_latest_time_window", window)
        return spec.replace_attributes(automation_condition=cond)

    return defs.map_resolved_asset_specs(func=condition, selection=CLOSE_SELECTION)


def evaluate(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    now: dt.datetime,
    cursor: AssetDaemonCursor | None,
    *,
    emit_backfills: bool = False,
) -> tuple[list[dg.RunRequest], AssetDaemonCursor]:
    """One tick of the automation sensor over `defs` at `now`: the evaluation context the
    automation daemon runs (Dagster-internal; `dg.evaluate_automation_conditions` returns the
    requested partitions, not the run requests they become)."""
    graph = defs.resolve_asset_graph()
    cursor = cursor or AssetDaemonCursor.empty()
    keys = {k for k in graph.get_all_asset_keys() if graph.get(k).automation_condition}
    requests, new_cursor, _ = AutomationTickEvaluationContext(
        evaluation_id=cursor.evaluation_id + 1,
        instance=instance,
        asset_graph=graph,
        cursor=cursor,
        materialize_run_tags={},
        observe_run_tags={},
        auto_observe_asset_keys=set(),
        asset_selection=dg.AssetSelection.keys(*keys),
        logger=logging.getLogger("automation_compare"),
        emit_backfills=emit_backfills,
        evaluation_time=now,
    ).evaluate()
    return list(requests), new_cursor


def requested_partitions(requests: list[dg.RunRequest], missed: list[dt.date]) -> int:
    wanted = {s.isoformat() for s in missed}
    asked: set[str] = set()
    for request in requests:
        if request.partition_key:
            asked.add(request.partition_key)
        subset = getattr(request, "asset_graph_subset", None)
        if subset is not None:
            for key in subset.asset_keys:
                asked |= set(subset.get_partitions_subset(key).get_partition_keys())
    return len(asked & wanted)


def eager_stock(settings: Settings, missed: list[dt.date], now: dt.datetime) -> Outcome:
    defs = with_conditions(build_definitions(settings), lookback=None)
    with instance_at(settings.home) as instance:
        start = time.perf_counter()
        requests, _ = evaluate(defs, instance, now, None)
        seconds = time.perf_counter() - start
    asked = requested_partitions(requests, missed)
    return Outcome(
        "eager_stock",
        len(requests),
        0,
        asked,
        seconds,
        asked == len(missed),
        f"requests only {asked} of the {len(missed)} missed sessions (evaluation only, "
        "nothing executed); keys: " + ", ".join(sorted({r.partition_key or "-" for r in requests})),
    )


def backfill_runs(subset) -> list[tuple[list[dg.AssetKey], dict[str, str]]]:
    """The runs the backfill daemon launches for `subset` when every partitioned asset has
    `BackfillPolicy.single_run()` and one partitions definition (MarketFlow's): one run over the
    range of the partitioned assets, then one for the unpartitioned ones."""
    runs = []
    by_key = subset.partitions_subsets_by_asset_key
    if by_key:
        keys = sorted({k for p in by_key.values() for k in p.get_partition_keys()})
        tags = {"dagster/asset_partition_range_start": keys[0]}
        tags["dagster/asset_partition_range_end"] = keys[-1]
        runs.append((list(by_key), tags))
    if subset.non_partitioned_asset_keys:
        runs.append((list(subset.non_partitioned_asset_keys), {}))
    return runs


def declarative(
    name: str, settings: Settings, missed: list[dt.date], now: dt.datetime, *, backfills: bool
) -> Outcome:
    """Tick the automation sensor and execute what it asks, until it asks for nothing."""
    defs = with_conditions(build_definitions(settings), lookback=LOOKBACK)
    runs = dbt = ticks = requested_backfills = 0
    ok = True
    with instance_at(settings.home) as instance:
        start = time.perf_counter()
        cursor = None
        while ticks < MAX_TICKS:
            requests, cursor = evaluate(defs, instance, now, cursor, emit_backfills=backfills)
            if not requests:
                break
            ticks += 1
            for request in requests:
                if request.requires_backfill_daemon():
                    requested_backfills += 1
                    planned = backfill_runs(request.asset_graph_subset)
                else:
                    planned = [(list(request.asset_selection), {})]
                for keys, tags in planned:
                    result = execute(
                        defs,
                        instance,
                        keys,
                        partition=request.partition_key,
                        tags={**request.tags, **tags},
                    )
                    runs += 1
                    dbt += dbt_invocations(result)
                    ok &= result.success
        seconds = time.perf_counter() - start
        caught_up = partitioned_done(instance, missed)
    note = f"{ticks} ticks with requests"
    if backfills:
        note += (
            f", {requested_backfills} backfills, each run as the backfill daemon runs "
            "single-run assets (emulated in process)"
        )
    return Outcome(name, runs, dbt, caught_up, seconds, ok, note)


# -- the comparison ------------------------------------------------------------------------------
STRATEGIES = ("range", "eager_stock", "eager_lookback", "emit_backfills")


def compare(tickers: int, history: int, missed_count: int, root: Path) -> list[Outcome]:
    built, missed = sessions(history, missed_count)
    base = root / "base"
    seed = settings_for(base, tickers, evening_after(built[-1]))
    defs = build_definitions(seed)
    with instance_at(base) as instance:
        result = execute(
            defs,
            instance,
            daily_keys(defs),
            tags={
                "dagster/asset_partition_range_start": built[0].isoformat(),
                "dagster/asset_partition_range_end": built[-1].isoformat(),
            },
        )
        if not result.success:
            raise RuntimeError("the history run failed; see its events")
    now = evening_after(missed[-1])
    outcomes = []
    for name in STRATEGIES:
        home = root / name
        shutil.copytree(base, home)
        settings = settings_for(home, tickers, now)
        if name == "range":
            outcomes.append(catch_up_range(settings, missed))
        elif name == "eager_stock":
            outcomes.append(eager_stock(settings, missed, now))
        else:
            backfills = name == "emit_backfills"
            outcomes.append(declarative(name, settings, missed, now, backfills=backfills))
    return outcomes


def render(outcomes: list[Outcome], missed: int, tickers: int) -> str:
    base = next(o for o in outcomes if o.strategy == "range")
    lines = [
        f"catch-up of {missed} missed sessions, {tickers} tickers (simulator)",
        f"{'strategy':<16}{'runs':>6}{'dbt':>6}{'caught up':>11}{'wall s':>9}{'ratio':>8}  note",
    ]
    for o in outcomes:
        ratio = o.seconds / base.seconds if base.seconds else float("nan")
        lines.append(
            f"{o.strategy:<16}{o.runs:>6}{o.dbt_invocations:>6}{o.sessions_caught_up:>11}"
            f"{o.seconds:>9.1f}{ratio:>8.2f}  {'' if o.ok else 'NOT OK '}{o.note}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickers", type=int, default=3, help="universe size (1-5)")
    parser.add_argument("--history", type=int, default=5, help="sessions built before the gap")
    parser.add_argument("--missed", type=int, default=20, help="sessions missed")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    logging.getLogger("dagster").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="automation-compare-") as tmp:
        outcomes = compare(args.tickers, args.history, args.missed, Path(tmp))
    print(render(outcomes, args.missed, args.tickers))
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(o) for o in outcomes], indent=2))
    return 0 if all(o.ok or o.strategy == "eager_stock" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
