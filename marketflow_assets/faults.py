"""Deterministic crash points for the fault-injection tests: inert unless `MARKETFLOW_FAULT` is set.

`fault_point("warehouse.replace")` kills the current process with SIGKILL (no cleanup, no
`finally`, no atexit: what a power cut, the OOM killer or `kill -9` does) when the environment
names that phase. `MARKETFLOW_FAULT=phase@N` kills at the N-th time the phase is reached (e.g.
after the first of several staged batches). The tests run a real child process with the
variable set and check that nothing is lost and nothing half-written stays visible.

Phases (where the call sits):

| phase | where |
| --- | --- |
| `raw.objects_written` | raw lake: objects written, manifest (the commit) not yet |
| `warehouse.staging` | a batched warehouse write: a batch staged, the replace not begun |
| `warehouse.replace` | inside the replacing transaction: old rows deleted, not committed |
| `dbt.build` | while the `dbt build` subprocess runs |
| `file_drops.claim` | file_drops sensor: files claimed, batch plan not yet written |
| `alerts.delivered` | alert delivered to its channels, its row not yet in the outbox |
"""

import os
import signal
from collections import Counter

FAULT_ENV = "MARKETFLOW_FAULT"
_reached: Counter[str] = Counter()


def fault_point(phase: str) -> None:
    """SIGKILL this process if `MARKETFLOW_FAULT` names `phase` (and this is its N-th hit)."""
    wanted = os.environ.get(FAULT_ENV)
    if not wanted:
        return
    name, _, nth = wanted.partition("@")
    if name != phase:
        return
    _reached[phase] += 1
    if _reached[phase] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
