"""The order `make test` hands test modules to its two xdist workers: longest first.

`make test` runs `-n 2 --dist loadfile --no-loadscope-reorder`: xdist gives each worker a whole
module at a time, in collection order, the next one whenever a worker runs dry. Longest first
(the LPT rule) makes the two workers end together: the long modules (the crash suite, Superset,
the benchmark, the dbt marts) start at once and the many short ones fill the gaps at the end,
instead of a long module starting late on one worker while the other runs dry.

A module's length is what it took the last time it ran whole on this checkout (kept in pytest's
cache, `.pytest_cache`), else the seconds in `module_seconds.json` (for a fresh clone such as
CI's), else DEFAULT_SECONDS. Only the order matters, not the values. The file's first values
(2026-11-27) are the CPU seconds of the eleven heaviest modules, each run alone on the project
machine, the others estimated from an earlier run's durations; after a full run,
`.venv/bin/python -m marketflow_tests.schedule` copies the measured seconds into it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

MEASURED = Path(__file__).with_name("module_seconds.json")
CACHE_KEY = "marketflow/module_seconds"
CACHE_FILE = Path(__file__).resolve().parents[1] / ".pytest_cache" / "v" / CACHE_KEY
DEFAULT_SECONDS = 10.0  # a module never timed: among the short ones
WORKER_INPUT = "marketflow_module_seconds"


def module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def known_seconds(config) -> dict[str, float]:
    """Seconds per module: the checked-in measurements, updated by the cache's. An xdist worker
    takes the controller's (see `pytest_configure_node` in conftest.py): workers must collect
    the same order, even if another run writes the cache meanwhile."""
    if hasattr(config, "workerinput") and WORKER_INPUT in config.workerinput:
        return config.workerinput[WORKER_INPUT]
    seconds = json.loads(MEASURED.read_text()) if MEASURED.exists() else {}
    cache = getattr(config, "cache", None)  # None with -p no:cacheprovider
    if cache is not None:
        seconds.update(cache.get(CACHE_KEY, {}))
    return seconds


def longest_first(items: list, config) -> None:
    """Sort `items` in place: modules by descending seconds, each module's tests in their own
    order (the sort is stable)."""
    seconds = known_seconds(config)
    items.sort(key=lambda item: -seconds.get(module_of(item.nodeid), DEFAULT_SECONDS))


class ModuleTimer:
    """A plugin of the run (under xdist, in the controller, which gets every worker's reports):
    adds up setup + call + teardown per module and keeps in pytest's cache the modules that ran
    whole and passed. A run of part of the suite's tests (`-k`, `-m`, `--lf`, `file::test`)
    keeps nothing for the modules it touched: their sums say nothing about their length."""

    def __init__(self, config) -> None:
        self.config = config
        self.seconds: dict[str, float] = defaultdict(float)
        self.failed: set[str] = set()
        option = config.option
        self.partial_run = bool(
            getattr(option, "keyword", "")
            or getattr(option, "markexpr", "")
            or getattr(option, "lf", False)
            or getattr(option, "stepwise", False)
        )
        self.partial = {module_of(arg) for arg in config.args if "::" in arg}

    def pytest_runtest_logreport(self, report) -> None:
        module = module_of(report.nodeid)
        self.seconds[module] += report.duration
        if report.failed:
            self.failed.add(module)

    def pytest_sessionfinish(self) -> None:
        cache = getattr(self.config, "cache", None)
        if cache is None or self.partial_run:
            return
        whole = {
            module: round(seconds, 1)
            for module, seconds in self.seconds.items()
            if module not in self.partial | self.failed
        }
        if whole:
            cache.set(CACHE_KEY, {**cache.get(CACHE_KEY, {}), **whole})


def main() -> None:
    """Copy the seconds of this checkout's pytest cache into module_seconds.json."""
    seconds = json.loads(MEASURED.read_text()) if MEASURED.exists() else {}
    if CACHE_FILE.exists():
        seconds.update(json.loads(CACHE_FILE.read_text()))
    MEASURED.write_text(json.dumps(dict(sorted(seconds.items())), indent=1) + "\n")
    print(f"{MEASURED}: {len(seconds)} modules")


if __name__ == "__main__":
    main()
