"""Per-step breakdown of one Dagster run, from the run's own event log.

Each step's time is STEP_START -> STEP_SUCCESS (or STEP_FAILURE / STEP_SKIPPED) as stamped by
Dagster, split into phases from the events inside the step:

- `compute_s`: STEP_START -> first STEP_OUTPUT (loading inputs plus the asset's own function;
  for dbt, until the first model is reported);
- `write_s`: first STEP_OUTPUT -> first ASSET_MATERIALIZATION (the IO manager's handle_output);
- `events_s`: first -> last ASSET_MATERIALIZATION (Dagster writing one materialization event per
  partition of a range run, plus, for multi-output steps, whatever runs between them);
- `tail_s`: the rest up to the step's end.

Run-level bookkeeping: `before_create_s` (execute_in_process called -> run record created: job
resolution and execution plan), `create_to_first_step_s` (run created -> first STEP_START:
planned-materialization events, run start, resource initialisation), `between_steps_s` (sum of
gaps between one step's end and the next step's start) and `after_last_step_s` (last step end ->
execute_in_process returned).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

STEP_END = {"STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED"}


@dataclass(frozen=True)
class Event:
    timestamp: float  # seconds since the epoch, as stamped by Dagster
    type: str  # DagsterEventType value, e.g. "STEP_START"
    step_key: str | None = None


def from_log_entries(entries: Iterable) -> list[Event]:
    """Dagster EventLogEntry objects -> Events (non-Dagster log lines are dropped)."""
    return [
        Event(e.timestamp, e.dagster_event.event_type_value, e.step_key)
        for e in entries
        if e.dagster_event is not None
    ]


def _phase(a: float | None, b: float | None) -> float:
    return round(b - a, 3) if a is not None and b is not None and b >= a else 0.0


def step_breakdown(events: list[Event]) -> list[dict]:
    """One dict per step, in the order the steps started."""
    by_step: dict[str, list[Event]] = {}
    for e in sorted(events, key=lambda e: e.timestamp):
        if e.step_key:
            by_step.setdefault(e.step_key, []).append(e)
    steps = []
    for key, evs in by_step.items():
        start = next((e.timestamp for e in evs if e.type == "STEP_START"), evs[0].timestamp)
        end_event = next((e for e in reversed(evs) if e.type in STEP_END), None)
        end = end_event.timestamp if end_event else evs[-1].timestamp
        outputs = [e.timestamp for e in evs if e.type == "STEP_OUTPUT"]
        mats = [e.timestamp for e in evs if e.type == "ASSET_MATERIALIZATION"]
        first_out = outputs[0] if outputs else None
        first_mat, last_mat = (mats[0], mats[-1]) if mats else (None, None)
        compute = _phase(start, first_out if first_out is not None else end)
        write = _phase(first_out, first_mat)
        emitted = _phase(first_mat, last_mat)
        duration = round(end - start, 3)
        counts = Counter(e.type for e in evs)
        steps.append(
            {
                "step": key,
                "status": end_event.type.removeprefix("STEP_").lower() if end_event else "running",
                "start": start,
                "end": end,
                "duration_s": duration,
                "compute_s": compute,
                "write_s": write,
                "events_s": emitted,
                "tail_s": round(max(duration - compute - write - emitted, 0.0), 3),
                "materializations": counts.get("ASSET_MATERIALIZATION", 0),
                "check_evaluations": counts.get("ASSET_CHECK_EVALUATION", 0),
                "events": len(evs),
            }
        )
    return steps


def run_breakdown(
    events: list[Event],
    *,
    run_created: float | None,
    call_start: float,
    call_end: float,
) -> dict:
    """Run-level timings (see the module docstring) plus the steps."""
    steps = step_breakdown(events)
    counts = Counter(e.type for e in events)
    first_start = min((s["start"] for s in steps), default=None)
    last_end = max((s["end"] for s in steps), default=None)
    gaps = 0.0
    ordered = sorted(steps, key=lambda s: s["start"])
    for prev, nxt in itertools.pairwise(ordered):
        gaps += max(nxt["start"] - prev["end"], 0.0)
    return {
        "run_s": round(call_end - call_start, 3),
        "before_create_s": _phase(call_start, run_created),
        "create_to_first_step_s": _phase(run_created, first_start),
        "steps_s": round(sum(s["duration_s"] for s in steps), 3),
        "between_steps_s": round(gaps, 3),
        "after_last_step_s": _phase(last_end, call_end),
        "events_total": len(events),
        "event_counts": dict(counts.most_common()),
        "steps": steps,
    }
