"""Targets, the printed tables and the JSON results file."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
from importlib import metadata
from pathlib import Path

from marketflow_assets.benchmark import serving
from marketflow_assets.benchmark.scenarios import (
    FLAT_MEMORY_RATIO,
    FLOOR_RATIO_LIMITS,
    GIB,
    INCREMENT_FLOOR_RATIO,
    Sizes,
    Target,
)

PACKAGES = ("dagster", "dagster-dbt", "dbt-core", "dbt-duckdb", "duckdb", "pandas", "numpy")
TOP_STEPS = 8


def machine() -> dict:
    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    info = {
        "cpu_count": os.cpu_count(),
        "cpu_model": None,
        "memory_gib": None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: version(name) for name in (*PACKAGES, "ta-lib")},
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return info


def _by_name(measurements: list[dict]) -> dict[str, dict]:
    return {m["name"]: m for m in measurements}


def _ok(m: dict | None) -> bool:
    return bool(m and m.get("ok"))


def rows_per_second(m: dict) -> float | None:
    if m.get("kernel"):
        best = m["kernel"]["kernel_best_s"]
        return m["kernel"]["rows"] / best if best else None
    rows, wall = (m.get("rows") or {}).get("main"), m.get("wall_s")
    return rows / wall if rows and wall else None


def targets(
    measurements: list[dict], sizes: Sizes, instance: str = "memory"
) -> tuple[list[Target], dict]:
    """The issue's targets, for the measurements present (a failed run measures None)."""
    by = _by_name(measurements)
    out: list[Target] = []
    derived: dict = {}

    def wall(name: str) -> float | None:
        return by[name]["wall_s"] if _ok(by.get(name)) else None

    def peak(name: str) -> float | None:
        return by[name]["rss"]["peak_mib"] if _ok(by.get(name)) else None

    if "daily_history" in by:
        out += [
            Target("daily_history", "wall", wall("daily_history"), 60, "s"),
            Target("daily_history", "peak RSS", peak("daily_history"), 2 * GIB, "MiB"),
        ]
    floor = wall("floor")
    if floor:
        derived["floor_s"] = floor
        if wall("daily_history") is not None:
            ratio = round(wall("daily_history") / floor, 2)
            derived["history_over_floor"] = ratio
            out.append(
                Target(
                    "daily_history",
                    f"wall / floor ({instance} instance)",
                    ratio,
                    FLOOR_RATIO_LIMITS[instance],
                    "x",
                )
            )
        increment = wall(f"daily_increment/on_{sizes.sessions}")
        if increment is not None:
            derived["increment_over_floor"] = round(increment / floor, 2)
            out.append(
                Target(
                    "daily_increment",
                    "wall / history floor",
                    derived["increment_over_floor"],
                    INCREMENT_FLOOR_RATIO,
                    "x",
                )
            )
    full, base = f"daily_increment/on_{sizes.sessions}", f"daily_increment/on_{sizes.base_sessions}"
    if full in by:
        ratio = None
        if sizes.base_sessions is not None and wall(full) is not None and wall(base):
            ratio = round(wall(full) / wall(base), 2)
        derived["increment_ratio"] = ratio
        out += [
            Target("daily_increment", f"wall on {sizes.sessions} sessions", wall(full), 15, "s"),
            Target("daily_increment", f"peak RSS on {sizes.sessions}", peak(full), GIB, "MiB"),
        ]
        if sizes.base_sessions is not None:
            out.append(
                Target(
                    "daily_increment",
                    f"wall ratio {sizes.sessions} / {sizes.base_sessions} sessions",
                    ratio,
                    1.5,
                    "x",
                )
            )
    intraday = {
        m["spec"]["extra"]["sessions"]: m for m in measurements if m["name"].startswith("intraday/")
    }
    limits = {1: (20, GIB), 20: (90, 2 * GIB)}
    for n, m in sorted(intraday.items()):
        if n in limits:
            w, p = (m["wall_s"], m["rss"]["peak_mib"]) if _ok(m) else (None, None)
            out += [
                Target("intraday", f"wall, {n} session(s)", w, limits[n][0], "s"),
                Target("intraday", f"peak RSS, {n} session(s)", p, limits[n][1], "MiB"),
            ]
    if _ok(intraday.get(5)) and _ok(intraday.get(20)):
        flat = round(intraday[20]["rss"]["peak_mib"] / intraday[5]["rss"]["peak_mib"], 2)
        derived["intraday_peak_20_over_5"] = flat
        out.append(Target("intraday", "peak RSS 20 / 5 sessions", flat, FLAT_MEMORY_RATIO, "x"))
    if "kernel" in by:
        k = by["kernel"].get("kernel") if _ok(by["kernel"]) else None
        derived["kernel_over_talib"] = k["ratio"] if k else None
        out.append(Target("kernel", "kernel / TA-Lib time", k["ratio"] if k else None, 2, "x"))
    out += serving.targets(by)
    return out, derived


# -- printing ---------------------------------------------------------------------------------
def _fmt(value, spec: str = ".1f", empty: str = "-") -> str:
    return empty if value is None else format(value, spec)


def measurement_table(measurements: list[dict]) -> str:
    head = (
        f"{'measurement':<30}{'wall s':>8}{'cpu s':>8}{'run s':>8}{'plan s':>8}{'rows':>12}"
        f"{'rows/s':>11}{'peak MiB':>10}{'checks':>9}  status"
    )
    lines = [head, "-" * len(head)]
    for m in measurements:
        d = m.get("dagster") or {}
        checks = m.get("checks") or {}
        check_text = (
            f"{checks.get('passed', 0)}/{checks.get('passed', 0) + len(checks.get('failed', []))}"
            if checks
            else "-"
        )
        run_s = (m.get("timing") or {}).get("run_s")
        if m.get("kernel"):
            run_s = m["kernel"]["kernel_best_s"]
        status = "ok" if m.get("ok") else "FAILED"
        if m.get("role") == "setup":
            status += " (setup)"
        lines.append(
            f"{m['name']:<30}{_fmt(m.get('wall_s')):>8}{_fmt(m.get('cpu_s')):>8}"
            f"{_fmt(run_s, '.2f'):>8}"
            f"{_fmt(d.get('create_to_first_step_s'), '.2f'):>8}"
            f"{_fmt((m.get('rows') or {}).get('main'), ',d'):>12}"
            f"{_fmt(rows_per_second(m), ',.0f'):>11}{_fmt(m['rss'].get('peak_mib'), '.0f'):>10}"
            f"{check_text:>9}  {status}"
        )
    lines.append(
        "wall: process start -> run end (interpreter, imports, definitions, run); cpu: user + "
        "system time of the process tree; run: "
        "execute_in_process (kernel: best repetition); plan: run created -> first step; "
        "rows/s over wall; peak: RSS of the process tree (dbt included)."
    )
    return "\n".join(lines)


def step_table(m: dict, top: int = TOP_STEPS) -> str:
    d = m.get("dagster")
    if not d:
        return ""
    timing = m.get("timing", {})
    lines = [
        f"{m['name']}: where the {m['wall_s']:.1f} s went",
        f"  {'interpreter + imports + definitions':<44}{m['wall_s'] - timing.get('run_s', 0):>8.2f} s"
        f"  (dagster import {timing.get('import_dagster_s', 0):.2f} s, definitions "
        f"{timing.get('load_definitions_s', 0):.2f} s)",
        f"  {'run: before run record created':<44}{d['before_create_s']:>8.2f} s",
        f"  {'run: created -> first step (planning)':<44}{d['create_to_first_step_s']:>8.2f} s",
        f"  {'run: steps':<44}{d['steps_s']:>8.2f} s",
        f"  {'run: between steps':<44}{d['between_steps_s']:>8.2f} s",
        f"  {'run: after last step':<44}{d['after_last_step_s']:>8.2f} s",
        f"  {'step':<36}{'total':>8}{'compute':>9}{'write':>8}{'events':>8}{'tail':>7}{'mats':>7}",
    ]
    steps = sorted(d["steps"], key=lambda s: -s["duration_s"])
    for s in steps[:top]:
        lines.append(
            f"  {s['step']:<36}{s['duration_s']:>8.2f}{s['compute_s']:>9.2f}{s['write_s']:>8.2f}"
            f"{s['events_s']:>8.2f}{s['tail_s']:>7.2f}{s['materializations']:>7}"
        )
    rest = steps[top:]
    if rest:
        lines.append(
            f"  {f'({len(rest)} more steps)':<36}{sum(s['duration_s'] for s in rest):>8.2f}"
        )
    return "\n".join(lines)


def kernel_table(m: dict) -> str:
    k = m.get("kernel")
    if not k:
        return ""
    return (
        f"kernel: daily_features on {k['tickers']} tickers x {k['rows']:,} rows: best "
        f"{k['kernel_best_s']:.3f} s vs TA-Lib alone {k['talib_best_s']:.3f} s "
        f"(x{k['ratio']}), best of {k['repeats']}; panel built in "
        f"{m['timing']['panel_build_s']:.1f} s"
    )


def target_table(items: list[Target], smoke: bool) -> str:
    head = f"{'scenario':<17}{'target':<36}{'measured':>11}{'limit':>9}  result"
    lines = [head, "-" * len(head)]
    for t in items:
        result = {True: "pass", False: "MISS", None: "n/a"}[t.passed]
        lines.append(
            f"{t.scenario:<17}{t.what:<36}{_fmt(t.measured, '.2f'):>11}"
            f"{t.limit:>8g}{t.unit[:1] if t.unit != 'MiB' else 'M'}  {result}"
        )
    if smoke:
        lines.append("(smoke sizes: the targets are for the full sizes)")
    return "\n".join(lines)


def render(measurements: list[dict], items: list[Target], sizes: Sizes) -> str:
    parts = ["", measurement_table(measurements), ""]
    for m in measurements:
        for text in (step_table(m), kernel_table(m)):
            if text:
                parts += [text, ""]
        if not m.get("ok"):
            parts += [
                f"{m['name']} failed:",
                m.get("error") or "\n".join(m.get("log_tail", [])),
                "",
            ]
    parts.append(target_table(items, sizes.smoke))
    return "\n".join(parts)


# -- JSON -------------------------------------------------------------------------------------
def write_json(out: Path, stamp: str, document: dict) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stamp}.json"
    path.write_text(json.dumps(document, indent=1, default=str))
    shutil.copy(path, out / "latest.json")
    return path


def stamp_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
