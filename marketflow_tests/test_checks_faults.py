"""The simulator's fault switches, each caught by the check meant for it, in one real run:
missing bars -> completeness; duplicates and bad ticks -> rejected rows that the row
reconciliation counts (and no blocking check fails, so gold is built); 100x prices ->
price_jump warnings in ops.anomalies."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter

import numpy as np
import pandas as pd

from marketflow_assets.sources.base import TICKER_COLUMN, BarsQuery
from marketflow_assets.sources.simulator import SimulatorFaults, SimulatorSource
from marketflow_tests.checks_support import (
    BLOCKING_SILVER_CHECKS,
    DAILY_AND_GOLD,
    evaluations,
    failed,
    metadata,
)
from marketflow_tests.helpers import (
    FRIDAY_EVENING,
    SMALL_UNIVERSE,
    materializations,
    materialize,
    query,
)

FAULTS = "missing_bars=0.03,duplicates=0.03,bad_ticks=0.03,price_100x=0.02"
RANGE = ("2024-01-02", "2024-06-07")
S = "silver/daily_bars"


def ground_truth() -> pd.DataFrame:
    """Per served (ticker, session): what the fault switches did to it."""
    start, end = (dt.date.fromisoformat(d) for d in RANGE)
    clean = SimulatorSource(seed=0, clock=FRIDAY_EVENING)
    faulty = SimulatorSource(seed=0, clock=FRIDAY_EVENING, faults=SimulatorFaults.parse(FAULTS))
    rows = []
    query_ = BarsQuery(tickers=tuple(SMALL_UNIVERSE.split(",")), start=start, end=end)
    clean_bars = clean.fetch_bars(query_).frame
    faulty_bars = faulty.fetch_bars(query_).frame
    for ticker in query_.tickers:
        good = clean_bars[clean_bars[TICKER_COLUMN] == ticker].set_index("Date")
        bad = faulty_bars[faulty_bars[TICKER_COLUMN] == ticker]
        copies = bad["Date"].value_counts()
        served = bad.drop_duplicates("Date").set_index("Date")
        for day, row in good.iterrows():
            got = served.loc[day] if day in served.index else None
            rows.append(
                {
                    "ticker": ticker,
                    "session": day.strftime("%Y-%m-%d"),
                    "missing": got is None,
                    "copies": int(copies.get(day, 0)),
                    "bad_tick": got is not None
                    and bool(got["High"] < got["Low"] or got["Close"] < 0 or np.isnan(got["Open"])),
                    "x100": got is not None and round(got["Close"] / row["Close"]) == 100,
                }
            )
    return pd.DataFrame(rows)


def test_each_fault_is_caught_by_its_check_and_none_blocks_gold(settings):
    faulty = dataclasses.replace(settings, simulator_faults=FAULTS)
    result = materialize(faulty, select=DAILY_AND_GOLD, partition_range=RANGE)
    truth = ground_truth()
    assert truth["missing"].any() and (truth["copies"] > 1).any()
    assert truth["bad_tick"].any() and truth["x100"].any()

    # Duplicates and bad ticks are rejected rows, not silver errors: gold is built.
    evals = evaluations(result)
    assert all(evals[(S, name)].passed for name in BLOCKING_SILVER_CHECKS)
    assert result.success and materializations(result, ["gold", "daily_features"])
    assert failed(result) == {(S, "completeness"), (S, "repairs_unit_100x")}

    # Reconciliation counts every rejected row: raw = bronze = silver + rejected.
    recon = metadata(evals[(S, "row_reconciliation")])
    rejected = query(faulty, "SELECT reason, count(*) AS n FROM silver.rejected_bars GROUP BY 1")
    assert recon["rejected_by_reason"] == dict(zip(rejected["reason"], rejected["n"], strict=True))
    assert (
        recon["raw_rows"] == recon["bronze_rows"] == recon["silver_rows"] + recon["rejected_rows"]
    )
    duplicates = int((truth["copies"] - 1).clip(lower=0)[~truth["bad_tick"]].sum())
    assert recon["rejected_by_reason"]["duplicate"] == duplicates

    # Missing bars (and bars rejected as bad ticks) are listed by completeness.
    firsts = query(
        faulty, "SELECT ticker, min(session_date) AS first FROM silver.daily_bars GROUP BY 1"
    )
    first = {
        t: d.strftime("%Y-%m-%d") for t, d in zip(firsts["ticker"], firsts["first"], strict=True)
    }
    gaps = truth[
        (truth["missing"] | truth["bad_tick"]) & (truth["session"] >= truth["ticker"].map(first))
    ]
    ev = evals[(S, "completeness")]
    md = metadata(ev)
    assert not ev.blocking and md["failing_rows"] == len(gaps)
    assert md["failing_sessions"] == dict(sorted(Counter(gaps["session"]).items()))
    assert set(md["failing_tickers"]) == set(gaps["ticker"])
    assert "rejected: " in md["sample"] or "no bar from the provider" in md["sample"]

    # 100x prices are repaired in silver (unit_100x), with provenance, instead of served: every
    # planted 100x bar that silver kept is listed in silver.bar_repairs, and price_jump is quiet.
    x100 = set(
        map(tuple, truth.loc[truth["x100"] & ~truth["bad_tick"], ["ticker", "session"]].values)
    )
    repaired = query(
        faulty,
        "SELECT ticker, session_date FROM silver.daily_bars WHERE repair_reason LIKE '%unit_100x%'",
    )
    got = {
        (t, d.strftime("%Y-%m-%d"))
        for t, d in zip(repaired["ticker"], repaired["session_date"], strict=True)
    }
    assert got == x100 and x100
    assert evals[(S, "price_jump")].passed
