"""Scenario `serving`: snapshot publish time (history and a one-session increment) and API
latency under concurrent loopback clients while the daily increment runs.

One child process (`measure`): the history run (the daily graph, which ends with
`serving/snapshot`: a full publish), the API as its own process (`python -m
marketflow_assets.api`, uvicorn), a load process (`python -m
marketflow_assets.benchmark.serving`) that cycles through the endpoints with `concurrency`
keep-alive clients, first idle (baseline), then while the increment run (one session, snapshot
included: an incremental publish) executes in the child.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from marketflow_assets.benchmark.scenarios import (
    FIXED_CLOCK,
    RunSpec,
    Target,
    increment_session,
    last_session,
    start_date_for,
    symbols,
    window,
)

CONCURRENCY = 8
PHASE_S = 3.0
SNAPSHOT_KEY = ("serving", "snapshot")


# -- parent side ------------------------------------------------------------------------------
def scenario(ctx) -> list[dict]:
    from marketflow_assets.benchmark.runner import fresh, launch

    last = last_session()
    first, _ = window(ctx.sizes.sessions, last)
    session, clock = increment_session(last)
    spec = RunSpec(
        name="serving",
        kind="serving",
        home=str(fresh(ctx.work / "serving")),
        clock=FIXED_CLOCK.isoformat(),
        tickers=ctx.sizes.tickers,
        universe_file=str(ctx.universe_file),
        partition_range=(first.isoformat(), last.isoformat()),
        partition=session.isoformat(),
        window=(first.isoformat(), last.isoformat()),
        instance=ctx.instance,
        start_date=start_date_for(first),
        extra={
            "increment_clock": clock.isoformat(),
            "concurrency": CONCURRENCY,
            "phase_s": PHASE_S if not ctx.sizes.smoke else 0.5,
            "ticker": symbols(1)[0],
        },
    )
    return [launch(ctx, spec)]


def targets(by: dict[str, dict]) -> list[Target]:
    m = by.get("serving")
    if m is None:
        return []
    s = m.get("serving") if m.get("ok") else None
    during = (s or {}).get("during_increment", {})

    def p(endpoint: str, q: str) -> float | None:
        return (during.get(endpoint) or {}).get(q)

    errors = sum(v.get("errors", 0) for v in during.values()) if s else None
    return [
        Target(
            "serving",
            "publish, one-session increment",
            (s or {}).get("publish_increment_s"),
            2,
            "s",
        ),
        Target("serving", "prices/latest p50 (during run)", p("prices_latest", "p50_ms"), 10, "ms"),
        Target("serving", "prices/latest p99 (during run)", p("prices_latest", "p99_ms"), 50, "ms"),
        Target("serving", "10y bars JSON p50 (during run)", p("bars_10y_json", "p50_ms"), 40, "ms"),
        Target(
            "serving",
            "prices/latest p50, cache miss (during run)",
            p("prices_latest_uncached", "p50_ms"),
            10,
            "ms",
        ),
        Target(
            "serving",
            "10y bars JSON p50, cache miss (during run)",
            p("bars_10y_json_uncached", "p50_ms"),
            40,
            "ms",
        ),
        Target("serving", "errors during the run", errors, 0, "requests"),
    ]


# -- child side -------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(settings, instance_kind: str, *, partition_range=None, partition=None):
    from marketflow_assets.benchmark.child import run_instance
    from marketflow_assets.definitions import build_definitions

    defs = build_definitions(settings)
    tags = {}
    if partition_range:
        tags = {
            "dagster/asset_partition_range_start": partition_range[0],
            "dagster/asset_partition_range_end": partition_range[1],
        }
    from marketflow_assets import cadence

    keys = (cadence.daily_assets | cadence.reference_assets).resolve(defs.resolve_asset_graph())
    job = defs.resolve_implicit_global_asset_job_def()
    with run_instance(instance_kind) as instance:
        started = time.perf_counter()
        result = job.execute_in_process(
            asset_selection=list(keys),
            partition_key=partition,
            tags=tags,
            instance=instance,
            raise_on_error=False,
        )
        took = time.perf_counter() - started
    publish = None
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        if tuple(mat.asset_key.path) == SNAPSHOT_KEY:
            publish = mat.metadata["seconds"].value
    return result.success, took, publish


def _wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the API exited with {proc.returncode}")
        try:
            con = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            con.request("GET", "/v1/health")
            if con.getresponse().status in (200,):
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the API did not become healthy")


def measure(spec: RunSpec) -> dict:
    from marketflow_assets.settings import Settings

    settings = Settings.from_env()
    ok_history, history_s, publish_history = _run(
        settings, spec.instance, partition_range=spec.partition_range
    )
    if not ok_history or publish_history is None:
        return {"ok": False, "error": "the history run (with serving/snapshot) failed"}

    port = _free_port()
    home = Path(spec.home)
    env = {**os.environ, "MARKETFLOW_API_PORT": str(port), "MARKETFLOW_API_HOST": "127.0.0.1"}
    api_log = (home / "api.log").open("w")
    api = subprocess.Popen(
        [sys.executable, "-m", "marketflow_assets.api"], env=env, stdout=api_log, stderr=api_log
    )
    try:
        _wait_healthy(port, api)
        extra = spec.extra
        first = spec.window[0]
        args = [f"http://127.0.0.1:{port}", extra["ticker"], first, str(extra["concurrency"])]
        baseline = _load(args, home / "baseline.json", phase_s=extra["phase_s"], stop_file=None)
        stop = home / "load.stop"
        stop.unlink(missing_ok=True)
        out = home / "during.json"
        loader = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "marketflow_assets.benchmark.serving",
                *args,
                str(out),
                str(extra["phase_s"]),
                str(stop),
            ]
        )
        time.sleep(0.5)  # clients connected before the run starts
        clock = dt.datetime.fromisoformat(extra["increment_clock"])
        ok_inc, increment_s, publish_increment = _run(
            dataclasses.replace(settings, simulator_now=clock),
            spec.instance,
            partition=spec.partition,
        )
        stop.touch()
        loader.wait(timeout=600)
        during = json.loads(out.read_text())
    finally:
        api.terminate()
        api.wait(timeout=30)
        api_log.close()
    snapshots = home / "serving" / "snapshots"
    return {
        "ok": ok_inc and publish_increment is not None,
        "run_end": time.time(),
        "serving": {
            "history_run_s": round(history_s, 2),
            "publish_history_s": round(sum(publish_history.values()), 3),
            "publish_history_steps": publish_history,
            "increment_run_s": round(increment_s, 2),
            "publish_increment_s": round(sum((publish_increment or {}).values()), 3),
            "publish_increment_steps": publish_increment,
            "snapshot_mib": round(
                max(p.stat().st_size for p in snapshots.glob("*.duckdb")) / 2**20, 1
            ),
            "baseline": baseline,
            "during_increment": during,
        },
    }


def _load(args: list[str], out: Path, *, phase_s: float, stop_file: Path | None) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "marketflow_assets.benchmark.serving",
        *args,
        str(out),
        str(phase_s),
        str(stop_file or ""),
    ]
    subprocess.run(cmd, check=True, timeout=600)
    return json.loads(out.read_text())


# -- load process -----------------------------------------------------------------------------
def endpoints(ticker: str, first: str) -> dict[str, str]:
    return {
        "prices_latest": "/v1/prices/latest",
        "bars_10y_json": f"/v1/bars/{ticker}?start={first}",
        "bars_10y_parquet": f"/v1/bars/{ticker}?start={first}&format=parquet",
        "features_latest": "/v1/features/latest",
        # A query parameter the API ignores makes each URL new: the response cache misses, so
        # these measure the query and serialization the cache saves on repeats.
        "prices_latest_uncached": "/v1/prices/latest?nocache={n}",
        "bars_10y_json_uncached": f"/v1/bars/{ticker}?start={first}&nocache={{n}}",
    }


def _phase(host: str, port: int, path: str, clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client() -> None:
        con = http.client.HTTPConnection(host, port, timeout=30)
        mine, bad = [], []
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                con.request("GET", path.replace("{n}", f"{threading.get_ident()}-{t0}"))
                response = con.getresponse()
                response.read()
                if response.status != 200:
                    bad.append(str(response.status))
            except (OSError, http.client.HTTPException) as exc:
                bad.append(repr(exc))
                con.close()
                con = http.client.HTTPConnection(host, port, timeout=30)
            mine.append((time.perf_counter() - t0) * 1000)
        con.close()
        with lock:
            latencies.extend(mine)
            errors.extend(bad)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return {"latencies": latencies, "errors": errors, "elapsed": elapsed}


def _summary(phases: list[dict]) -> dict:
    lat = sorted(x for p in phases for x in p["latencies"])
    elapsed = sum(p["elapsed"] for p in phases)
    if not lat:
        return {"requests": 0, "errors": sum(len(p["errors"]) for p in phases)}
    q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else [lat[0]] * 99
    return {
        "requests": len(lat),
        "errors": sum(len(p["errors"]) for p in phases),
        "error_samples": [e for p in phases for e in p["errors"]][:5],
        "p50_ms": round(q[49], 2),
        "p99_ms": round(q[98], 2),
        "max_ms": round(lat[-1], 2),
        "rps": round(len(lat) / elapsed, 1) if elapsed else None,
    }


def load_main(argv: list[str]) -> int:
    """`python -m marketflow_assets.benchmark.serving BASE TICKER FIRST CLIENTS OUT PHASE_S
    [STOP_FILE]`: one round over the endpoints, or rounds until STOP_FILE exists."""
    base, ticker, first, clients, out, phase_s = argv[:6]
    stop = Path(argv[6]) if len(argv) > 6 and argv[6] else None
    host, port = base.removeprefix("http://").split(":")
    results: dict[str, list[dict]] = {}
    while True:
        for name, path in endpoints(ticker, first).items():
            results.setdefault(name, []).append(
                _phase(host, int(port), path, int(clients), float(phase_s))
            )
        if stop is None or stop.exists():
            break
    summary = {name: _summary(phases) for name, phases in results.items()}
    Path(out).write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(load_main(sys.argv[1:]))
