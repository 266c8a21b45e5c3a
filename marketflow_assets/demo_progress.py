"""What `make demo` shows while it runs: one line per finished step, the full log in a file.

A Dagster logger (`demo_logger`) replaces the console logger for the demo's runs. Every record
goes to the log file at DEBUG, as the console would have shown it; the terminal gets one line
per step (elapsed time, the assets it materialized and for how many sessions, its checks'
verdicts, or the error of a failed step). Whatever else writes to the process's stdout or stderr
while the runs execute (dbt's console, library warnings) goes to the same file
(`terminal_to_log`). The same events are stored in the instance, so the runs look the same in the
UI as any other run.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import dagster as dg

LOGGER_KEY = "demo_progress"
RUN_CONFIG = {"loggers": {LOGGER_KEY: {}}}
"""Run config that switches the demo logger on (Dagster only builds configured loggers)."""


@dataclass
class Progress:
    """Step lines for `out`, and what the checks said, across the demo's runs."""

    out: TextIO
    started: float = field(default_factory=time.monotonic)
    steps_done: int = 0
    failures: list[str] = field(default_factory=list)
    check_verdicts: Counter = field(default_factory=Counter)  # (asset:check, verdict) -> n
    _materialized: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    _checks: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    _checked: dict[str, set] = field(default_factory=lambda: defaultdict(set))

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def on_event(self, step_key: str | None, event: dg.DagsterEvent) -> None:
        kind = event.event_type
        if kind == dg.DagsterEventType.ASSET_MATERIALIZATION and step_key:
            self._materialized[step_key][event.asset_key.to_user_string()] += 1
        elif kind == dg.DagsterEventType.ASSET_CHECK_EVALUATION and step_key:
            data = event.event_specific_data
            name = f"{data.asset_key.to_user_string()}:{data.check_name}"
            level = "warn" if data.severity == dg.AssetCheckSeverity.WARN else "FAILED"
            verdict = "passed" if data.passed else level
            self._checks[step_key]["passed" if data.passed else f"{level} {name}"] += 1
            self._checked[step_key].add(data.asset_key.to_user_string())
            self.check_verdicts[(name, verdict)] += 1
        elif kind == dg.DagsterEventType.STEP_SUCCESS and step_key:
            self._line(step_key, event.event_specific_data.duration_ms / 1000, "")
        elif kind == dg.DagsterEventType.STEP_FAILURE and step_key:
            error = event.event_specific_data.error
            while error is not None and error.cause is not None:  # the user's error, not
                error = error.cause  # Dagster's "error occurred while executing op" wrapper
            reason = (error.message if error else "failed").strip().splitlines()[0]
            self.failures.append(f"{step_key}: {reason}")
            self._line(step_key, None, f"FAILED: {reason}")

    def _line(self, step_key: str, seconds: float | None, note: str) -> None:
        self.steps_done += 1
        assets = self._materialized.pop(step_key, Counter())
        checks = self._checks.pop(step_key, Counter())
        checked = self._checked.pop(step_key, set())
        what = ", ".join(
            f"{key} ({n} sessions)" if n > 1 else key for key, n in sorted(assets.items())
        )
        if not what and checked:  # a checks-only step, whose op name Dagster may have generated
            what = f"checks on {', '.join(sorted(checked))}"
        if checks:
            passed = checks.pop("passed", 0)
            verdicts = [f"{passed} check{'' if passed == 1 else 's'} passed"] if passed else []
            verdicts += sorted(checks)
            what = "; ".join(filter(None, [what, ", ".join(verdicts)]))
        took = f"{seconds:5.1f}s" if seconds is not None else "     "
        self.out.write(
            f"  [{self.elapsed():6.1f}s] {took}  {what or step_key}  {note}".rstrip() + "\n"
        )
        self.out.flush()


class _ProgressHandler(logging.Handler):
    def __init__(self, progress: Progress):
        super().__init__(level=logging.DEBUG)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        if event is not None:
            self.progress.on_event(meta.get("step_key"), event)


def demo_logger(log_file: Path, progress: Progress) -> dg.LoggerDefinition:
    """A logger writing everything to `log_file` and step lines to `progress`."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s - %(levelname)s - %(message)s"))
    logger = logging.Logger("marketflow.demo", level=logging.DEBUG)
    logger.addHandler(handler)
    logger.addHandler(_ProgressHandler(progress))
    return dg.LoggerDefinition(
        lambda _init_context: logger,
        description="make demo: full log to a file, one progress line per step",
    )


@contextmanager
def terminal_to_log(log_file: Path) -> Iterator[TextIO]:
    """Point file descriptors 1 and 2 at `log_file` (so dbt's console and stray prints land there,
    whoever writes them) and yield a stream to the real terminal for the progress lines."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(saved[0]), "w", buffering=1, encoding="utf-8")
    with log_file.open("a", encoding="utf-8") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield terminal
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            terminal.close()
