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
`marketflow/tickers` run tag. Why not `AutomationCondition.eager()` on the downstream layers:

- a range materialized upstream would be followed per partition: N runs, N dbt start-ups (8 s
  each), N check evaluations; one range run asks the provider once per ticker batch and runs dbt
  once (DESIGN.md, "Partitions");
- conditions cannot carry the ticker scope: a file drop or a split rebuild for one ticker would
  make the followers rebuild the whole universe;
- idempotency is explicit: each request carries tags (`marketflow/automation`, the range, the
  tickers) and a run key derived from the work, so a sensor can see that the same work is
  queued or running and skip it.

The small unpartitioned followers (silver/corporate_actions, silver/symbols, gold/ticker_reports)
ride along in the same runs (they are in the daily/reference selections), so they need no
condition either; no automation-condition sensor has to run.

Clock: automation reads the provider's clock, i.e. real time, or MARKETFLOW_SIMULATOR_NOW when
the simulator's clock is pinned (demos, tests), so sensors and the provider agree on "now".
Sessions, closes and early closes come from `calendar.py`, never from Dagster's last partition
key (dagster-io/dagster#33551, see `partitions.py`).
"""
