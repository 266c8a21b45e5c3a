"""Optional cProfile of a measured block (`--profile`): <path>.prof plus a readable <path>.txt."""

from __future__ import annotations

import cProfile
import io
import pstats
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PROFILE_TOP = 40


@contextmanager
def profiled(path: str | None) -> Iterator[None]:
    """Profile the block when `path` is set (timings of a profiled run are inflated)."""
    if not path:
        yield
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        profiler.dump_stats(path + ".prof")
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("cumulative").print_stats(PROFILE_TOP)
        stats.sort_stats("tottime").print_stats(PROFILE_TOP)
        Path(path + ".txt").write_text(text.getvalue())
