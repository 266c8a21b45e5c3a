"""The parent side: launch one child per measurement, sample its process tree's memory, and
assemble the scenarios (which homes, clocks and windows each child gets)."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from marketflow_assets.benchmark.sampler import TreeSampler
from marketflow_assets.benchmark.scenarios import (
    FIXED_CLOCK,
    RunSpec,
    Sizes,
    dagster_run,
    increment_session,
    intraday_window,
    last_session,
    symbols,
    window,
)
from marketflow_assets.benchmark.serving import scenario as serving_scenario

REPO_DAGSTER_YAML = Path(__file__).resolve().parents[2] / "dagster.yaml"
POSTGRES_DAGSTER_YAML = Path(__file__).resolve().parents[1] / "instance" / "dagster.postgres.yaml"
POSTGRES_ENV = (
    "DAGSTER_POSTGRES_HOST",
    "DAGSTER_POSTGRES_PORT",
    "DAGSTER_POSTGRES_USER",
    "DAGSTER_POSTGRES_PASSWORD",
    "DAGSTER_POSTGRES_DB",
)
LOG_TAIL_LINES = 40
DAILY_SELECTION = ("daily", "reference")
INTRADAY_SELECTION = ("intraday",)


@dataclass
class Context:
    work: Path  # homes, specs and child logs
    out: Path  # results (and the logs of failed children, and profiles)
    stamp: str
    sizes: Sizes
    instance: str = "memory"
    emit_partition_subset: bool = True
    event_batch_size: int = 5000  # DAGSTER_EVENT_BATCH_SIZE of the runs (0: one event at a time)
    profile: bool = False
    reuse_history: bool = False  # keep each increment's history home in `work` and start from it
    echo: Callable[[str], None] = print
    homes: dict[str, Path] = field(default_factory=dict)  # state one scenario leaves to another

    @property
    def universe_file(self) -> Path:
        path = self.work / f"universe_{self.sizes.tickers}.txt"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(symbols(self.sizes.tickers)) + "\n")
        return path


def child_env(ctx: Context, spec: RunSpec) -> dict[str, str]:
    """The caller's environment without any MARKETFLOW_* / DAGSTER_* setting, plus the
    scenario's: a reproducible simulator, its own home and Dagster home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MARKETFLOW_", "DAGSTER_"))}
    home = Path(spec.home)
    env.update(
        MARKETFLOW_HOME=str(home),
        MARKETFLOW_SOURCE="simulator",
        MARKETFLOW_SIMULATOR_SEED="0",
        MARKETFLOW_SIMULATOR_NOW=spec.clock,
        DAGSTER_HOME=str(home / "dagster"),
        DAGSTER_DISABLE_TELEMETRY="true",
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
        PYTHONUNBUFFERED="1",
    )
    if spec.universe_file:
        env["MARKETFLOW_TICKERS"] = "@" + spec.universe_file
    if spec.start_date:
        env["MARKETFLOW_START_DATE"] = spec.start_date
    if ctx.emit_partition_subset:
        env["DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"] = "1"
    if ctx.event_batch_size > 0:
        env["DAGSTER_EVENT_BATCH_SIZE"] = str(ctx.event_batch_size)
    if spec.instance == "postgres":  # the server the caller points DAGSTER_POSTGRES_* at
        env.update({k: os.environ[k] for k in POSTGRES_ENV if k in os.environ})
    return env


def fresh(home: Path) -> Path:
    """An empty home: a reused --work folder must not leak state into a measurement."""
    shutil.rmtree(home, ignore_errors=True)
    return home


def _slug(name: str) -> str:
    return name.replace("/", "__")


def _create_instance(ctx: Context, spec: RunSpec) -> None:
    """Create the on-disk instance's storage (tables, schema version) before the measured run,
    in its own process: a deployment's instance exists before any backfill is launched from it
    (`make dev` creates it once), and creating SQLite's three databases costs ~3 s of DDL commits
    that no later run pays."""
    subprocess.run(
        [sys.executable, "-c", "import dagster; dagster.DagsterInstance.get().dispose()"],
        env=child_env(ctx, spec),
        cwd=spec.home,
        check=True,
        capture_output=True,
    )


def launch(ctx: Context, spec: RunSpec) -> dict:
    """Run `spec` in a child process while sampling the RSS of its process tree."""
    home = Path(spec.home)
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    if spec.instance == "sqlite" and REPO_DAGSTER_YAML.exists():
        shutil.copy(REPO_DAGSTER_YAML, home / "dagster" / "dagster.yaml")
    if spec.instance == "postgres":
        missing = [k for k in POSTGRES_ENV if k not in os.environ]
        if missing:
            raise SystemExit(f"--instance postgres needs {', '.join(missing)} set")
        shutil.copy(POSTGRES_DAGSTER_YAML, home / "dagster" / "dagster.yaml")
    if spec.instance != "memory":
        _create_instance(ctx, spec)
    if ctx.profile and spec.role == "measured":
        profiles = ctx.out / "profiles" / ctx.stamp
        profiles.mkdir(parents=True, exist_ok=True)
        spec.profile = str(profiles / _slug(spec.name))
    slug = _slug(spec.name)
    spec_path, result_path = ctx.work / f"{slug}.spec.json", ctx.work / f"{slug}.result.json"
    log_path = ctx.work / f"{slug}.log"
    spec_path.write_text(json.dumps(spec.as_dict(), indent=1))
    result_path.unlink(missing_ok=True)

    ctx.echo(f"  running {spec.name} ({spec.role}) ...")
    load_before = os.getloadavg()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    spawned = time.time()
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "marketflow_assets.benchmark.child", spec_path, result_path],
            env=child_env(ctx, spec),
            cwd=home,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        sampler = TreeSampler(proc.pid).start()
        returncode = proc.wait()
        exited = time.time()
        sampler.stop()
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)

    if result_path.exists():
        result = json.loads(result_path.read_text())
    else:
        result = {"ok": False, "error": f"the child exited with {returncode} and no result"}
    result.update(
        name=spec.name,
        role=spec.role,
        spec=spec.as_dict(),
        returncode=returncode,
        # Process start -> end of the measured run: what `dagster asset materialize` costs
        # (interpreter, imports, definitions, the run), without this harness's reporting.
        wall_s=round(result.get("run_end", exited) - spawned, 3),
        process_s=round(exited - spawned, 3),
        # CPU of the child and every descendant it waited for (dbt): with wall time, shows
        # waiting and, on a shared machine, other load.
        cpu_s=round(
            cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime, 2
        ),
        loadavg_1m=[round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        rss=sampler.summary(),
    )
    result.pop("run_end", None)
    if not result.get("ok"):
        lines = log_path.read_text(errors="replace").splitlines()
        result["log_tail"] = lines[-LOG_TAIL_LINES:]
        kept = ctx.out / "logs" / ctx.stamp / log_path.name
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(log_path, kept)
        result["log"] = str(kept)
        ctx.echo(f"  {spec.name} FAILED: log in {kept}")
    else:
        ctx.echo(
            f"  {spec.name}: {result['wall_s']:.1f} s, peak {result['rss']['peak_mib']:.0f} MiB"
        )
    return result


# -- scenarios --------------------------------------------------------------------------------
def floor(ctx: Context) -> list[dict]:
    """Scenario 0: the daily history's data work by hand (DuckDB + TA-Lib), the floor the
    Dagster runs are compared with."""
    first, last = window(ctx.sizes.sessions, last_session())
    spec = RunSpec(
        name="floor",
        kind="floor",
        home=str(fresh(ctx.work / "floor")),
        clock=FIXED_CLOCK.isoformat(),
        tickers=ctx.sizes.tickers,
        window=(first.isoformat(), last.isoformat()),
    )
    return [launch(ctx, spec)]


def daily_history(ctx: Context) -> list[dict]:
    """Scenario 1: the whole daily + reference graph over `sessions` sessions as one run."""
    first, last = window(ctx.sizes.sessions, last_session())
    home = fresh(ctx.work / "daily_history")
    result = launch(ctx, _history_spec(ctx, "daily_history", home, first, last, "measured"))
    if result.get("ok"):
        ctx.homes["daily_history"] = home
    return [result]


def _history_spec(ctx: Context, name: str, home: Path, first, last, role: str) -> RunSpec:
    return dagster_run(
        name,
        home,
        selection=DAILY_SELECTION,
        first=first,
        last=last,
        clock=FIXED_CLOCK,
        tickers=ctx.sizes.tickers,
        universe_file=ctx.universe_file,
        main_table="gold.daily_features",
        instance=ctx.instance,
        role=role,
    )


def daily_increment(ctx: Context) -> list[dict]:
    """Scenario 2: the next session as a one-partition run, on the full history (the home
    `daily_history` left, else built here as a setup run) and on `base_sessions` of history."""
    last = last_session()
    session, clock = increment_session(last)
    results = []
    histories = [ctx.sizes.sessions]
    if ctx.sizes.base_sessions is not None:
        histories.append(ctx.sizes.base_sessions)
    for n in histories:
        # The increment runs in the home its history was built in, at the same path, as a
        # deployment's next run finds its warehouse: dbt keys its partial-parse state on the
        # warehouse path, so a moved home would make the increment's dbt parse the whole project
        # once (~3 s), which no daily run pays.
        reusable = ctx.homes.pop("daily_history", None) if n == ctx.sizes.sessions else None
        home = reusable or fresh(ctx.work / f"daily_increment_on_{n}")
        kept = ctx.work / f"history_{ctx.sizes.tickers}x{n}"  # --reuse-history: left untouched
        if reusable is not None:  # the history run's home, untouched since
            if ctx.reuse_history:
                _keep_copy(home, kept)
        elif ctx.reuse_history and kept.is_dir():
            ctx.echo(f"  reusing the history home {kept}")
            shutil.copytree(kept, home, symlinks=True)
        else:
            first, _ = window(n, last)
            setup = launch(
                ctx, _history_spec(ctx, f"daily_increment/history_{n}", home, first, last, "setup")
            )
            results.append(setup)
            if not setup.get("ok"):
                continue
            if ctx.reuse_history:
                _keep_copy(home, kept)
        spec = dagster_run(
            f"daily_increment/on_{n}",
            home,
            selection=DAILY_SELECTION,
            first=session,
            last=session,
            clock=clock,
            tickers=ctx.sizes.tickers,
            universe_file=ctx.universe_file,
            main_table="gold.daily_features",
            instance=ctx.instance,
            single_partition=True,
        )
        spec.extra = {"history_sessions": n}
        results.append(launch(ctx, spec))
    return results


def _keep_copy(home: Path, kept: Path) -> None:
    """A pristine copy of a history home, for later `--reuse-history` invocations (written
    under a temporary name first: an interrupted copy is never taken for a history)."""
    partial = kept.with_name(kept.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(home, partial, symlinks=True)
    shutil.rmtree(kept, ignore_errors=True)
    partial.rename(kept)


def intraday(ctx: Context) -> list[dict]:
    """Scenario 3: the intraday graph over the last 1 / 5 / 20 sessions, each as one run."""
    results = []
    for n in ctx.sizes.intraday_sessions:
        first, last = intraday_window(n)
        spec = dagster_run(
            f"intraday/{n}_session{'s' if n > 1 else ''}",
            fresh(ctx.work / f"intraday_{n}"),
            selection=INTRADAY_SELECTION,
            first=first,
            last=last,
            clock=FIXED_CLOCK,
            tickers=ctx.sizes.tickers,
            universe_file=ctx.universe_file,
            main_table="silver.intraday_bars_1m",
            instance=ctx.instance,
        )
        spec.extra = {"sessions": n}
        results.append(launch(ctx, spec))
    return results


def kernel(ctx: Context) -> list[dict]:
    """Scenario 4: gold/daily_features' kernel alone beside bare TA-Lib."""
    spec = RunSpec(
        name="kernel",
        kind="kernel",
        home=str(fresh(ctx.work / "kernel")),
        clock=FIXED_CLOCK.isoformat(),
        tickers=ctx.sizes.tickers,
        kernel_sessions=ctx.sizes.sessions,
        kernel_repeats=ctx.sizes.kernel_repeats,
    )
    return [launch(ctx, spec)]


RUNNERS = {
    "floor": floor,
    "daily_history": daily_history,
    "daily_increment": daily_increment,
    "intraday": intraday,
    "kernel": kernel,
    "serving": serving_scenario,
}
