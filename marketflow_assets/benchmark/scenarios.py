"""What each scenario runs: sizes, the fixed simulator clock, session windows, child-run specs
and the targets they are judged against.

Everything here is planning (no Dagster import): the parent process builds `RunSpec`s, a child
process (`benchmark.child`) executes one spec and reports.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from marketflow_assets.calendar import EXCHANGE_TZ, xnys
from marketflow_assets.settings import Settings
from marketflow_assets.sources.base import INTRADAY_LOOKBACK_DAYS

# A Friday evening after the close: every session through 2024-06-07 is final, and the
# simulator's one-minute window (30 days) holds 21 sessions (2024-05-09..2024-06-07).
FIXED_CLOCK = dt.datetime(2024, 6, 7, 22, 0, tzinfo=dt.UTC)
AFTER_CLOSE = dt.timedelta(hours=2)  # the clock of an increment: its session's close + 2 h
SCENARIOS = ("floor", "daily_history", "daily_increment", "intraday", "kernel", "serving")
GIB = 1024.0  # in MiB


@dataclass(frozen=True)
class Sizes:
    tickers: int = 500
    sessions: int = 2520  # daily history: 10 years
    # The shorter history the increment is compared with (1 year); None: no comparison.
    base_sessions: int | None = 252
    intraday_sessions: tuple[int, ...] = (1, 5, 20)
    kernel_repeats: int = 7
    smoke: bool = False

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


# Three Dagster runs (history, its increment, one intraday session) and the kernel: each run
# costs ~10 s whatever its size (interpreter, imports, dbt start-up).
SMOKE = Sizes(
    tickers=5, sessions=20, base_sessions=None, intraday_sessions=(1,), kernel_repeats=2, smoke=True
)


def sizes_for(*, smoke: bool, tickers: int | None, sessions: int | None) -> Sizes:
    base = SMOKE if smoke else Sizes()
    sizes = dataclasses.replace(
        base,
        tickers=tickers or base.tickers,
        sessions=sessions or base.sessions,
    )
    if sizes.tickers < 1 or sizes.sessions < 2:
        raise ValueError("--tickers must be >= 1 and --sessions >= 2")
    if sizes.base_sessions is not None and sizes.base_sessions >= sizes.sessions:
        sizes = dataclasses.replace(sizes, base_sessions=None)
    return sizes


def symbols(n: int) -> list[str]:
    """Synthetic symbols the simulator serves (not in its listings: full history since 2000)."""
    return [f"B{i:04d}" for i in range(1, n + 1)]


# -- sessions and clocks ------------------------------------------------------------------
def last_session(clock: dt.datetime = FIXED_CLOCK) -> dt.date:
    session = xnys().latest_closed_session(clock)
    assert session is not None
    return session


def window(sessions: int, last: dt.date) -> tuple[dt.date, dt.date]:
    """The `sessions` sessions ending at `last`."""
    return xnys().offset(last, -(sessions - 1)), last


def increment_session(last: dt.date) -> tuple[dt.date, dt.datetime]:
    """The session after `last` and a provider clock just after its close."""
    cal = xnys()
    session = cal.next_session(last)
    assert session is not None
    return session, cal.close_utc(session) + AFTER_CLOSE


def intraday_window(sessions: int, clock: dt.datetime = FIXED_CLOCK) -> tuple[dt.date, dt.date]:
    """The last `sessions` closed sessions, checked against the provider's one-minute window."""
    first, last = window(sessions, last_session(clock))
    oldest = clock.astimezone(EXCHANGE_TZ).date() - dt.timedelta(days=INTRADAY_LOOKBACK_DAYS - 1)
    if first < oldest:
        raise ValueError(
            f"{sessions} intraday sessions ({first}..{last}) do not fit the provider's "
            f"{INTRADAY_LOOKBACK_DAYS}-day one-minute window from {oldest}"
        )
    return first, last


# -- child-run specs ------------------------------------------------------------------------
@dataclass
class RunSpec:
    """One child process: a Dagster run of a cadence selection, or the kernel comparison."""

    name: str  # unique within a benchmark, e.g. "daily_increment/10y"
    kind: str  # "dagster" | "kernel" | "floor"
    home: str
    clock: str  # ISO timestamp: MARKETFLOW_SIMULATOR_NOW
    role: str = "measured"  # or "setup": builds state a measured run starts from
    tickers: int = 0
    universe_file: str | None = None
    selection: tuple[str, ...] = ()  # cadence names: daily, intraday, reference
    partition_range: tuple[str, str] | None = None
    partition: str | None = None
    window: tuple[str, str] | None = None  # the sessions whose main-output rows are counted
    main_table: str | None = None
    instance: str = "memory"
    start_date: str | None = None  # MARKETFLOW_START_DATE, when the window starts before 2010
    kernel_sessions: int = 0
    kernel_repeats: int = 0
    profile: str | None = None  # write a cProfile of the measured part to this path
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RunSpec:
        data = dict(data)
        for key in ("selection", "partition_range", "window"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)


def start_date_for(first: dt.date) -> str | None:
    """MARKETFLOW_START_DATE only when the default would not cover the window."""
    return first.isoformat() if first < Settings().start_date else None


def dagster_run(
    name: str,
    home: Path,
    *,
    selection: tuple[str, ...],
    first: dt.date,
    last: dt.date,
    clock: dt.datetime,
    tickers: int,
    universe_file: Path,
    main_table: str,
    instance: str,
    single_partition: bool = False,
    role: str = "measured",
) -> RunSpec:
    return RunSpec(
        name=name,
        kind="dagster",
        home=str(home),
        clock=clock.isoformat(),
        role=role,
        tickers=tickers,
        universe_file=str(universe_file),
        selection=selection,
        partition_range=None if single_partition else (first.isoformat(), last.isoformat()),
        partition=first.isoformat() if single_partition else None,
        window=(first.isoformat(), last.isoformat()),
        main_table=main_table,
        instance=instance,
        start_date=start_date_for(first),
    )


# -- targets --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    scenario: str
    what: str
    measured: float | None
    limit: float
    unit: str

    @property
    def passed(self) -> bool | None:
        return None if self.measured is None else self.measured <= self.limit

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "passed": self.passed}


# daily_history wall / floor wall (the hand-written DuckDB + TA-Lib data work on the same input)
FLOOR_RATIO_LIMITS = {"memory": 3.0, "sqlite": 4.5, "postgres": 4.5}
INCREMENT_FLOOR_RATIO = 1.0  # the one-session increment's wall / the 10-year floor's wall

FLAT_MEMORY_RATIO = 1.25
"""'Flat memory as sessions grow': peak(20 sessions) <= 1.25 x peak(5 sessions), while the
rows grow 4x."""
