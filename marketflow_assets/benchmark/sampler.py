"""Peak resident memory of a whole process tree, sampled from /proc.

A scenario runs in a child process, and dbt runs as a grandchild of it, so the memory a scenario
needs is the sum over the tree at each moment. `TreeSampler` polls every `interval` seconds in a
thread of the parent: it finds the descendants of the root from the parent pids in
/proc/<pid>/stat and sums their VmRSS (/proc/<pid>/statm). Sums of RSS count shared pages once
per process (an upper bound of the real footprint); a process living less than one interval can
be missed.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
PROC = Path("/proc")
MIB = 1024 * 1024


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, command name) of a live process, None if it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    lparen, rparen = text.find("("), text.rfind(")")
    fields = text[rparen + 2 :].split()
    return int(fields[1]), text[lparen + 1 : rparen]


def _rss_bytes(pid: int) -> int:
    try:
        return int((PROC / str(pid) / "statm").read_text().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


def process_tree(root: int) -> dict[int, str]:
    """`root` and all its live descendants: pid -> command name."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    with os.scandir(PROC) as entries:
        pids = [int(e.name) for e in entries if e.name.isdigit()]
    for pid in pids:
        info = _stat(pid)
        if info is not None:
            children.setdefault(info[0], []).append(pid)
            names[pid] = info[1]
    if root not in names:
        return {}
    tree, todo = {}, [root]
    while todo:
        pid = todo.pop()
        tree[pid] = names.get(pid, "?")
        todo.extend(children.get(pid, ()))
    return tree


@dataclass
class TreeSampler:
    """Samples the RSS of `root`'s process tree until `stop()`; the results are its fields."""

    root: int
    interval: float = 0.05
    peak_bytes: int = 0
    peak_root_bytes: int = 0
    peak_at_s: float = 0.0
    max_processes: int = 0
    samples: int = 0
    peak_by_command: dict[str, int] = field(default_factory=dict)
    timeline: list[tuple[float, int]] = field(default_factory=list)  # (seconds, bytes), ~2/s
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _started: float = field(default=0.0, repr=False)

    def start(self) -> TreeSampler:
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def sample(self) -> int:
        """One sample; returns the tree's total RSS in bytes."""
        tree = process_tree(self.root)
        by_command: dict[str, int] = {}
        total = 0
        for pid, name in tree.items():
            rss = _rss_bytes(pid)
            total += rss
            by_command[name] = by_command.get(name, 0) + rss
            if pid == self.root:
                self.peak_root_bytes = max(self.peak_root_bytes, rss)
        elapsed = time.monotonic() - self._started
        for name, rss in by_command.items():
            self.peak_by_command[name] = max(self.peak_by_command.get(name, 0), rss)
        if total > self.peak_bytes:
            self.peak_bytes, self.peak_at_s = total, elapsed
        self.max_processes = max(self.max_processes, len(tree))
        self.samples += 1
        if tree and (not self.timeline or elapsed - self.timeline[-1][0] >= 0.5):
            self.timeline.append((round(elapsed, 2), total))
        return total

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def summary(self) -> dict:
        return {
            "peak_mib": round(self.peak_bytes / MIB, 1),
            "peak_root_mib": round(self.peak_root_bytes / MIB, 1),
            "peak_at_s": round(self.peak_at_s, 2),
            "peak_by_command_mib": {
                name: round(b / MIB, 1)
                for name, b in sorted(self.peak_by_command.items(), key=lambda kv: -kv[1])
            },
            "max_processes": self.max_processes,
            "samples": self.samples,
            "interval_s": self.interval,
            "timeline_mib": [(t, round(b / MIB, 1)) for t, b in self.timeline],
        }
