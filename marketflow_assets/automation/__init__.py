"""Automation: the schedules and sensors that keep the warehouse current without a person.

Each domain (`marketflow_assets/domains/`) puts the ones it owns in its Definitions.

One module per concern:

| module | definition | what it launches |
| --- | --- | --- |
| `close.py` | schedule `daily_close` | the session that just closed, raw -> gold, daily + reference |
| `catch_up.py` | sensor `daily_catch_up` | missed sessions (lookback window) as ONE range run |
| `intraday.py` | sensor `intraday_poll` | the open session's 1m path every N minutes, plus one final poll |
| `universe.py` | sensor `universe_changes` | added tickers' full history (ticker-scoped); symbols refresh |
| `corporate_actions.py` | sensor `corporate_action_rebuilds` | adjusted history of tickers with new splits/dividends |
| `file_drops.py` | sensor `file_drops` | dropped CSV/JSON files landed in raw (source `file`) and downstream |
| `late_facts.py` | sensor `late_fact_rebuilds` | gold fundamentals sessions built before a fact they should use was known |
| `alerts.py` | sensors `run_failure_alerts`, `check_failure_alerts` | ops.alert_history rows, Slack, email |

Design choice: sensors and schedules launch explicit runs, not declarative automation.
Every request is ONE run over a partition range (tags `dagster/asset_partition_range_start/end`)
with the whole downstream selection in it, optionally restricted to some tickers with the
`marketflow/tickers` run tag. Measured against `AutomationCondition` on a catch-up of 20 missed
sessions (`python -m marketflow_assets.benchmark.automation_compare --tickers 2 --history 3
--missed 20`; same state for each, one invocation, wall time as a ratio to the range run):

| strategy | runs | dbt invocations | missed sessions built | wall time |
| --- | --- | --- | --- | --- |
| range run (`daily_catch_up`, what MarketFlow does) | 1 | 1 | 20 of 20 | 1.00 |
| stock `eager()`, `missing()` on the roots | (1 request) | - | 1 of 20 | - |
| the same widened to a 60-day window, run requests | 45 | 23 | 20 of 20 | 4.94 |
| the same, `emit_backfills=True` (3 backfills) | 5 | 2 | 20 of 20 | 0.91 |

What the figures say, and the decision:
- the stock conditions look at the latest partition only: they do not catch up a gap at all
  (and on a weekend or holiday evening that partition is the next, unopened session,
  dagster-io/dagster#33551, `partitions.py`); catching up needs hand-built conditions anyway;
- as plain run requests they follow the graph partition by partition and layer by layer: 45
  runs, 23 dbt start-ups, ~5x the wall time; this is what the range run avoids;
- with `emit_backfills` (the automation sensor's default) the cost is that of the range run
  (5 runs in 3 backfills, 2 dbt invocations, 0.91x; the range run also refetches the reference
  data, which the conditions leave alone): cost alone does not decide. What does:
- conditions cannot carry the ticker scope: a file drop or a split rebuild for one ticker would
  make the followers rebuild the whole universe;
- idempotency is explicit: each request carries tags (`marketflow/automation`, the range, the
  tickers) and a run key derived from the work, so a sensor can see that the same work is
  queued or running and skip it; what the catch-up decides (never initialize an empty
  deployment, leave the latest session to `daily_close`, back off after a failure, count only
  whole-universe runs) is a pure, unit-tested function (`catch_up.py`), not a condition tree.
So the sensors stay. Revisit when conditions can select by run tags, or if MarketFlow drops
ticker-scoped runs; `emit_backfills` would then be the form to adopt.
The backfill daemon was emulated in process (one range run per backfill for the single-run
partitioned assets, one for the unpartitioned): its own polling latency between waves is not
in the 0.91x.

The small unpartitioned followers (silver/corporate_actions, silver/symbols, gold/ticker_reports)
ride along in the same runs (they are in the daily/reference selections), so they need no
condition either; no automation-condition sensor has to run.

Clock: automation reads the provider's clock, i.e. real time, or MARKETFLOW_SIMULATOR_NOW when
the simulator's clock is pinned (demos, tests), so sensors and the provider agree on "now".
Sessions, closes and early closes come from `calendar.py`, never from Dagster's last partition
key (dagster-io/dagster#33551, see `partitions.py`).
"""
