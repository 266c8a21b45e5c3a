"""`python -m marketflow_assets.benchmark [--scenario NAME ...] [--tickers N] [--sessions N]
[--instance memory|sqlite] [--out DIR] [--smoke] [--work DIR --reuse-history]`."""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from marketflow_assets.benchmark import report
from marketflow_assets.benchmark.runner import RUNNERS, Context
from marketflow_assets.benchmark.scenarios import FIXED_CLOCK, SCENARIOS, sizes_for


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m marketflow_assets.benchmark",
        description="Benchmark the real MarketFlow asset graph on the simulator (make bench).",
    )
    p.add_argument(
        "--scenario",
        action="append",
        choices=SCENARIOS,
        help="run only this scenario (repeatable; default: all, in the order listed)",
    )
    p.add_argument("--tickers", type=int, help="universe size (default 500; smoke 5)")
    p.add_argument(
        "--sessions", type=int, help="daily history length and kernel panel (default 2520)"
    )
    p.add_argument(
        "--instance",
        choices=("memory", "sqlite", "postgres"),
        default="memory",
        help="Dagster instance: in-memory (ephemeral, MarketFlow's batched in-memory event log), "
        "sqlite in a temporary DAGSTER_HOME with the repository's dagster.yaml (on-disk event "
        "log), or postgres with instance/dagster.postgres.yaml (set DAGSTER_POSTGRES_*)",
    )
    p.add_argument("--out", type=Path, default=Path("bench_results"), help="results folder")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the harness only")
    p.add_argument(
        "--work",
        type=Path,
        help="folder for the scenarios' homes (default: a temporary folder, removed at the end)",
    )
    p.add_argument("--keep-work", action="store_true", help="keep the work folder")
    p.add_argument(
        "--reuse-history",
        action="store_true",
        help="daily_increment keeps each history it builds as <work>/history_<tickers>x<sessions> "
        "and, when that folder exists, starts from a copy of it instead of building the history "
        "again: repeat increment measurements in seconds (needs --work)",
    )
    p.add_argument(
        "--no-emit-partition-subset",
        dest="emit_partition_subset",
        action="store_false",
        help="do not set DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=1 (default: set, one "
        "planned-materialization event per asset of a single-run backfill)",
    )
    p.add_argument(
        "--event-batch-size",
        type=int,
        default=5000,
        help="DAGSTER_EVENT_BATCH_SIZE of the runs (default 5000, as the Makefile; 0: Dagster "
        "writes events one at a time)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="cProfile each measured run into <out>/profiles/<stamp>/ (inflates its timings)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.reuse_history and not args.work:
        parser().error("--reuse-history needs --work (the folder that keeps the histories)")
    sizes = sizes_for(smoke=args.smoke, tickers=args.tickers, sessions=args.sessions)
    scenarios = [s for s in SCENARIOS if s in (args.scenario or SCENARIOS)]
    stamp = report.stamp_now()
    work = args.work or Path(tempfile.mkdtemp(prefix="marketflow-bench-"))
    work = work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    ctx = Context(
        work=work,
        out=args.out.resolve(),
        stamp=stamp,
        sizes=sizes,
        instance=args.instance,
        emit_partition_subset=args.emit_partition_subset,
        event_batch_size=args.event_batch_size,
        profile=args.profile,
        reuse_history=args.reuse_history,
    )
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    print(
        f"MarketFlow benchmark {stamp}: {', '.join(scenarios)}; {sizes.tickers} tickers, "
        f"{sizes.sessions} sessions, instance {args.instance}, work {work}",
        flush=True,
    )
    # What a deployment builds at install time (the dbt manifest) is built before anything is
    # measured, in its own process, as `make install` does: a fresh checkout's first run would
    # otherwise count the one-off `dbt parse`.
    subprocess.run([sys.executable, "-m", "marketflow_assets.prepare"], check=True)
    measurements: list[dict] = []
    try:
        for name in scenarios:
            print(f"{name}:", flush=True)
            measurements += RUNNERS[name](ctx)
    finally:
        if not (args.keep_work or args.work):
            shutil.rmtree(work, ignore_errors=True)

    items, derived = report.targets(measurements, sizes, args.instance)
    document = {
        "schema_version": 1,
        "stamp": stamp,
        "started_at": started.isoformat(),
        "duration_s": round(time.monotonic() - t0, 1),
        "argv": sys.argv[1:] if argv is None else argv,
        "machine": report.machine(),
        "config": {
            "scenarios": scenarios,
            "sizes": sizes.as_dict(),
            "instance": args.instance,
            "emit_partition_subset_in_planned_events": args.emit_partition_subset,
            "event_batch_size": args.event_batch_size,
            "simulator_clock": FIXED_CLOCK.isoformat(),
            "simulator_seed": 0,
            "profiled": args.profile,
        },
        "measurements": measurements,
        "derived": derived,
        "targets": [t.as_dict() for t in items],
    }
    path = report.write_json(ctx.out, stamp, document)
    print(report.render(measurements, items, sizes))
    print(f"\nResults: {path} (and {ctx.out / 'latest.json'})")
    return 0 if all(m.get("ok") for m in measurements) else 1
