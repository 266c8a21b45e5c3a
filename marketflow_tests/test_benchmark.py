"""`make bench` harness: planning, the RSS sampler, the step breakdown, and one smoke benchmark
end to end (child processes running the real graph, JSON written) so the harness cannot rot."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import textwrap

import pytest

from marketflow_assets.benchmark.cli import main
from marketflow_assets.benchmark.sampler import MIB, TreeSampler
from marketflow_assets.benchmark.scenarios import (
    FIXED_CLOCK,
    increment_session,
    intraday_window,
    last_session,
    sizes_for,
    symbols,
    window,
)
from marketflow_assets.benchmark.steps import Event, run_breakdown
from marketflow_assets.calendar import xnys


def test_plan_fits_the_simulator_clock():
    last = last_session()
    assert last == dt.date(2024, 6, 7)
    first, _ = window(2520, last)
    assert len(xnys().sessions_in_range(first, last)) == 2520
    session, clock = increment_session(last)
    assert session == dt.date(2024, 6, 10)
    assert clock > xnys().close_utc(session) > FIXED_CLOCK
    # 20 sessions of one-minute bars fit the provider's 30-day window; 25 do not.
    assert intraday_window(20) == (dt.date(2024, 5, 10), last)
    with pytest.raises(ValueError, match="one-minute window"):
        intraday_window(25)
    assert symbols(3) == ["B0001", "B0002", "B0003"]
    assert sizes_for(smoke=False, tickers=None, sessions=None).base_sessions == 252
    assert sizes_for(smoke=False, tickers=10, sessions=100).base_sessions is None


def test_sampler_counts_the_whole_process_tree():
    # A shell whose child (our grandchild) holds 80 MiB: only the tree sum sees it.
    script = "x = bytearray(80 * 1024 * 1024); import time; time.sleep(0.8)"
    proc = subprocess.Popen(["/bin/sh", "-c", f"{sys.executable} -c '{script}'; true"])
    sampler = TreeSampler(proc.pid, interval=0.02).start()
    proc.wait()
    sampler.stop()
    summary = sampler.summary()
    assert sampler.max_processes >= 2
    assert sampler.peak_bytes >= 80 * MIB
    assert sampler.peak_root_bytes < 20 * MIB  # the shell itself
    assert summary["samples"] > 5 and summary["peak_mib"] >= 80


def test_step_breakdown_phases_and_bookkeeping():
    t = 1000.0
    events = [
        Event(t + 0.5, "RUN_START"),
        Event(t + 1.0, "STEP_START", "a"),
        Event(t + 3.0, "STEP_OUTPUT", "a"),
        Event(t + 4.0, "ASSET_MATERIALIZATION", "a"),
        Event(t + 4.5, "ASSET_MATERIALIZATION", "a"),
        Event(t + 4.6, "HANDLED_OUTPUT", "a"),
        Event(t + 5.0, "STEP_SUCCESS", "a"),
        Event(t + 5.5, "STEP_START", "b"),
        Event(t + 6.0, "STEP_FAILURE", "b"),
    ]
    out = run_breakdown(events, run_created=t + 0.2, call_start=t, call_end=t + 6.5)
    a, b = out["steps"]
    assert (a["duration_s"], a["compute_s"], a["write_s"], a["events_s"]) == (4.0, 2.0, 1.0, 0.5)
    assert a["tail_s"] == 0.5 and a["materializations"] == 2
    assert b["status"] == "failure" and b["compute_s"] == 0.5
    assert out["before_create_s"] == 0.2
    assert out["create_to_first_step_s"] == 0.8
    assert out["between_steps_s"] == 0.5
    assert out["after_last_step_s"] == 0.5
    assert out["event_counts"]["ASSET_MATERIALIZATION"] == 2


@pytest.mark.slow
def test_smoke_benchmark_end_to_end(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "--smoke",
            *("--scenario", "floor"),
            *("--scenario", "daily_history", "--scenario", "daily_increment"),
            *("--scenario", "kernel"),
            *("--out", str(out), "--work", str(tmp_path / "work")),
        ]
    )
    printed = capsys.readouterr().out
    doc = json.loads((out / "latest.json").read_text())
    failures = [m.get("error") or m.get("log_tail") for m in doc["measurements"] if not m["ok"]]
    assert code == 0, textwrap.shorten(str(failures), 3000)
    assert [p.name for p in out.glob("2*.json")] == [f"{doc['stamp']}.json"]

    floor, history, increment, kernel = doc["measurements"]
    # The floor: the same data work by hand on the same input, the ratios' denominator.
    assert floor["name"] == "floor" and floor["rows"]["main"] == 100
    assert set(floor["floor"]["steps_s"]) >= {"fetch", "raw", "silver", "gold", "marts"}
    assert doc["derived"]["history_over_floor"] > 0
    # Every check execution of the range run is resolved (per session), none left PLANNED.
    assert "PLANNED" not in history["check_executions"]
    assert history["check_executions"]["SUCCEEDED"] > 0
    assert (history["name"], increment["name"], kernel["name"]) == (
        "daily_history",
        "daily_increment/on_20",
        "kernel",
    )
    # The history run: 5 tickers x 20 sessions of features, dbt (a grandchild) in the peak.
    assert history["rows"]["main"] == 100
    assert history["rss"]["peak_mib"] > history["rss"]["peak_root_mib"] > 0
    assert "dbt" in history["rss"]["peak_by_command_mib"]
    steps = {s["step"]: s for s in history["dagster"]["steps"]}
    assert {
        "raw__daily_bars",
        "silver_daily_validation",
        "gold__daily_features",
        "dbt_marts",
    } <= set(steps)
    assert all(s["status"] == "success" for s in steps.values())
    assert steps["raw__daily_bars"]["materializations"] == 20  # one per partition of the range
    assert history["dagster"]["create_to_first_step_s"] > 0
    assert 0 < history["timing"]["run_s"] < history["wall_s"] <= history["process_s"]
    # The increment reused the history's home: one new session.
    assert increment["spec"]["partition"] == "2024-06-10"
    assert increment["rows"]["main"] == 5
    assert increment["rows"]["tables"]["gold.daily_features"] == 105
    assert kernel["kernel"]["rows"] == 100 and kernel["kernel"]["talib_best_s"] > 0

    assert doc["config"]["emit_partition_subset_in_planned_events"] is True
    assert doc["config"]["event_batch_size"] > 0
    assert doc["machine"]["cpu_count"] >= 1 and doc["machine"]["versions"]["dagster"]
    assert {t["scenario"] for t in doc["targets"]} == {"daily_history", "daily_increment", "kernel"}
    assert "daily_history" in printed and "kernel / TA-Lib" in printed


def test_reusing_histories_needs_a_work_folder_to_keep_them(capsys):
    with pytest.raises(SystemExit):
        main(["--smoke", "--scenario", "daily_increment", "--reuse-history"])
    assert "--reuse-history needs --work" in capsys.readouterr().err
