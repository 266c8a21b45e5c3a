"""`make demo`: a year of history from the offline simulator, every layer, mart and chart.

Two Dagster runs in the instance under $DAGSTER_HOME (so they show in the UI afterwards): the
daily and reference path over `DEMO_SESSIONS` sessions (enough for SMA 200 and its crossovers,
the 52-week range and the 252-session charts), then the one-minute path over the last
`DEMO_INTRADAY_SESSIONS` sessions (the provider keeps 30 days of minute bars). The terminal
shows one line per step and a summary; the full event log goes to a file it names.

Before running, the demo writes the source it uses (simulator, seed, clock, faults, tickers,
first session) to `$MARKETFLOW_HOME/settings.toml`, keeping anything already there, so
`make dev`, `make serve` and the `dagster` CLI afterwards work on the same data, offline.
Environment variables still override both the file and the demo's defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path

import dagster as dg
import duckdb

from marketflow_assets import cadence
from marketflow_assets.calendar import xnys
from marketflow_assets.definitions import build_definitions
from marketflow_assets.demo_progress import (
    LOGGER_KEY,
    RUN_CONFIG,
    Progress,
    demo_logger,
    terminal_to_log,
)
from marketflow_assets.settings import Settings
from marketflow_assets.settings_file import (
    read_settings_file,
    settings_path,
    variable_name,
    write_settings_file,
)
from marketflow_assets.storage.object_store import LocalObjectStore
from marketflow_assets.storage.raw_lake import RawLake

DEMO_SESSIONS = 260
"""SMA 200 needs 200 sessions before its first value; 60 more give the golden/death crosses and
monthly returns something to show. Measured: the run's cost grows with sessions (Dagster's
per-session events), hardly with tickers, so the whole default universe stays in."""
DEMO_INTRADAY_SESSIONS = 2
"""The one-minute path costs ~0.5 s per session at 36 tickers: two sessions fill every
intraday mart (hourly bars, VWAP, daily summary, anomalies)."""
# A little dirt, so the rejected-rows table and the quality checks have something to show.
DEMO_FAULTS = "duplicates=0.002,bad_ticks=0.002"
DEMO_DEFAULTS = {"source": "simulator", "simulator_faults": DEMO_FAULTS}
HANDED_OVER = (
    "source",
    "csv_dir",
    "tickers",
    "start_date",
    "simulator_seed",
    "simulator_now",
    "simulator_faults",
)
"""The settings that identify the data the demo built; written to the settings file."""
SETTINGS_HEADER = """\
MarketFlow settings for this home, read by make dev / make serve / dagster (Settings.from_env).
Written by `make demo` with the source it built from; edit freely, `make demo` keeps your keys.
Keys are the MARKETFLOW_* variables in lower case without the prefix; a non-empty environment
variable overrides the same key here. simulator_now unset = the simulator follows the real clock.
"""


def demo_settings(env: Mapping[str, str] | None = None) -> tuple[Settings, bool]:
    """Settings from the environment over the home's settings file over the demo's defaults, and
    whether the first session was chosen by the user (environment or file)."""
    env = dict(os.environ if env is None else env)
    home = Path(env.get("MARKETFLOW_HOME", "").strip() or ".marketflow").expanduser()
    in_file = read_settings_file(settings_path(home))
    defaults = {
        variable_name(k): v for k, v in DEMO_DEFAULTS.items() if variable_name(k) not in in_file
    }
    layered = {**defaults, **{k: v for k, v in env.items() if v.strip()}}
    start_chosen = "MARKETFLOW_START_DATE" in in_file or "MARKETFLOW_START_DATE" in layered
    return Settings.from_env(layered), start_chosen


def demo_range(settings: Settings, sessions: int = DEMO_SESSIONS) -> tuple[dt.date, dt.date]:
    now = settings.simulator_now or dt.datetime.now(dt.UTC)
    cal = xnys()
    last = cal.latest_closed_session(now)
    first = max(cal.offset(last, -(sessions - 1)), settings.start_date)
    return first, last


def hand_over(settings: Settings) -> Path:
    """Write the demo's source to the home's settings file, keeping the file's other keys."""
    path = settings_path(settings.home)
    kept = {
        name.removeprefix("MARKETFLOW_").lower(): value
        for name, value in read_settings_file(path).items()
    }
    chosen = {
        "source": settings.source,
        "csv_dir": settings.csv_dir,
        "tickers": settings.tickers,
        "start_date": settings.start_date.isoformat(),
        "simulator_seed": settings.simulator_seed,
        "simulator_now": settings.simulator_now.isoformat() if settings.simulator_now else None,
        "simulator_faults": settings.simulator_faults,
    }
    values = {**kept, **{k: chosen[k] for k in HANDED_OVER if chosen[k] not in (None, "")}}
    for key in HANDED_OVER:  # unset in the demo = unset for what follows (e.g. the real clock)
        if chosen[key] in (None, ""):
            values.pop(key, None)
    return write_settings_file(path, values, SETTINGS_HEADER)


@dataclasses.dataclass(frozen=True)
class Stage:
    title: str
    selection: dg.AssetSelection
    first: dt.date
    last: dt.date


def stages(first: dt.date, last: dt.date, intraday_sessions: int) -> list[Stage]:
    """The daily path over [first, last], then (unless 0) the last `intraday_sessions`."""
    plan = [
        Stage(
            "daily history: raw -> silver -> gold, marts and charts",
            cadence.daily_assets | cadence.reference_assets,
            first,
            last,
        )
    ]
    if intraday_sessions > 0:
        intraday_first = max(xnys().offset(last, -(intraday_sessions - 1)), first)
        plan.append(
            Stage("one-minute bars: raw -> gold", cadence.intraday_assets, intraday_first, last)
        )
    return plan


def run_stages(
    settings: Settings, plan: list[Stage], log_file: Path, progress: Progress
) -> list[dg.ExecuteInProcessResult]:
    defs = dg.Definitions.merge(
        build_definitions(settings),
        dg.Definitions(loggers={LOGGER_KEY: demo_logger(log_file, progress)}),
    )
    graph = defs.resolve_asset_graph()
    job = defs.resolve_implicit_global_asset_job_def()
    results = []
    with dg.DagsterInstance.get() as instance:
        for n, stage in enumerate(plan, 1):
            sessions = len(xnys().sessions_in_range(stage.first, stage.last))
            progress.out.write(
                f"\n[{n}/{len(plan)}] {stage.title}, {sessions} sessions "
                f"{stage.first}..{stage.last}\n"
            )
            result = job.execute_in_process(
                asset_selection=list(stage.selection.resolve(graph)),
                instance=instance,
                run_config=RUN_CONFIG,
                tags={
                    "dagster/asset_partition_range_start": stage.first.isoformat(),
                    "dagster/asset_partition_range_end": stage.last.isoformat(),
                    "marketflow/demo": "true",
                },
                raise_on_error=False,
            )
            results.append(result)
            if not result.success:
                break
    return results


def summary(settings: Settings) -> str:
    lines = []
    if settings.s3_bucket is None:
        raw = RawLake(LocalObjectStore(settings.lake_root))
        landed = sum(
            o.rows for m in raw.manifests(settings.source, "daily_bars") for o in m.objects
        )
        lines.append(f"  {'raw daily_bars (rows landed)':<34}{landed:>12,}")
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        tables = con.execute(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables "
            "WHERE table_schema IN ('bronze', 'silver', 'gold', 'ops') ORDER BY 1"
        ).fetchall()
        for (name,) in tables:
            count = con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
            lines.append(f"  {name:<34}{count:>12,}")
        rejected = con.execute(
            "SELECT reason, count(*) FROM silver.rejected_bars GROUP BY 1 ORDER BY 2 DESC"
        ).fetchall()
    finally:
        con.close()
    lines.append("\nRejected rows (silver.rejected_bars) by reason:")
    lines += [f"  {reason:<34}{n:>12,}" for reason, n in rejected] or ["  none"]
    return "\n".join(lines)


def checks_summary(progress: Progress) -> str:
    """Verdicts over the demo's runs; a failed WARN check is data worth a look, not an error."""
    passed = sum(n for (_, verdict), n in progress.check_verdicts.items() if verdict == "passed")
    failed = sorted(
        f"{verdict}: {name}" for name, verdict in progress.check_verdicts if verdict != "passed"
    )
    text = f"Checks: {passed} evaluations passed, {len(failed)} checks did not"
    return text + "".join(f"\n  {line}" for line in failed)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=DEMO_SESSIONS)
    parser.add_argument("--intraday-sessions", type=int, default=DEMO_INTRADAY_SESSIONS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Dagster flags beta/preview parameters on every import; they say nothing about the demo.
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    settings, start_chosen = demo_settings()
    first, last = demo_range(settings, args.sessions)
    if not start_chosen:  # partitions begin where the demo's history does: all of it green
        settings = dataclasses.replace(settings, start_date=first)
    settings_file = hand_over(settings)
    log_file = settings.home / "logs" / f"demo-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.log"
    clock = settings.simulator_now.isoformat() if settings.simulator_now else "real time"
    print(
        f"MarketFlow demo: source={settings.source} (seed {settings.simulator_seed}, clock "
        f"{clock}), sessions {first}..{last}, home {settings.home}\n"
        f"Settings for make dev / make serve: {settings_file}\n"
        f"Full log: {log_file}",
        flush=True,
    )
    with terminal_to_log(log_file) as terminal:
        progress = Progress(terminal)
        plan = stages(first, last, args.intraday_sessions)
        results = run_stages(settings, plan, log_file, progress)
    ok = all(r.success for r in results) and len(results) == len(plan)
    took = f"{progress.elapsed():.1f}s"
    status = "succeeded" if ok else "FAILED (details in the log file and the run in the UI)"
    print(f"\nDemo {status} in {took}: runs {', '.join(r.run_id[:8] for r in results)}.")
    for failure in progress.failures:
        print(f"  {failure}")
    print(f"\nRows per table:\n{summary(settings)}\n\n{checks_summary(progress)}")
    lake = (
        f"s3://{settings.s3_bucket}/{settings.s3_prefix}"
        if settings.s3_bucket
        else settings.lake_root.resolve()
    )
    print(
        f"\nLake:      {lake}\nWarehouse: {settings.warehouse.resolve()}\nLog:       {log_file}\n"
        "\nOpen the UI with `make dev` (same source, from the settings file), then "
        "http://127.0.0.1:3000 -> Assets; the demo's runs are in Runs.\n"
        "Load any asset from Python:\n"
        "  from dagster import AssetKey\n"
        "  from marketflow_assets.definitions import defs\n"
        f'  defs.load_asset_value(AssetKey(["silver", "daily_bars"]), partition_key="{last}")'
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
