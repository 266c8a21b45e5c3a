"""`make bench`: market-scale benchmark of the real asset graph (`python -m
marketflow_assets.benchmark --help`).

Scenarios (simulator source, local lake, fixed simulator clock; each measurement in a fresh
MARKETFLOW_HOME and its own child process):

- `daily_history`: the daily + reference graph, raw -> gold with checks, over 500 tickers x
  2,520 sessions as one single-run backfill;
- `daily_increment`: the next session (clock advanced past its close) as a one-partition run on
  top of that history, and on top of a 1-year history, with the ratio of the two;
- `intraday`: the intraday graph over the last 1, 5 and 20 sessions of one-minute bars;
- `kernel`: `transforms.indicators.daily_features` alone beside bare TA-Lib, best of N.

Each measurement reports wall time, rows per second of its main output, the peak RSS of its
process tree (dbt included; `sampler.py`) and a per-step breakdown from the run's own Dagster
event log (`steps.py`). Results print as tables and go to `bench_results/<UTC stamp>.json` and
`bench_results/latest.json`.

Layout: `cli.py` (arguments, the whole benchmark), `runner.py` (scenarios, child launch),
`child.py` (one measurement, in the child), `kernel.py`, `sampler.py`, `steps.py`,
`scenarios.py` (sizes, clocks, specs, targets), `report.py` (tables, JSON).
"""
