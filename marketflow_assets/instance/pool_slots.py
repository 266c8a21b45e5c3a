"""Pool slots that two runs can never both hold.

Why: every warehouse step runs in the `duckdb_warehouse` pool (limit 1), the only thing that keeps
two runs' warehouse steps from interleaving (DuckDB allows one writing process per file, and a
step opens the file more than once). Dagster 1.13 claims a slot by selecting a free slot row
`FOR UPDATE SKIP LOCKED` and then updating that row by id. SQLite ignores `FOR UPDATE`, so two
runs whose steps ask within a few milliseconds of each other both select the same free row, and
the second update overwrites the first run's claim: both steps run at once (seen in
`test_concurrent_and_stuck_runs`, two runs started together: a blocking reconciliation check
failed on rows the other run was writing). Here the update also requires the row to be free, so
SQLite's single writer decides: the loser gets BLOCKED and waits in the pool's queue, as a step
that found no free slot does. On PostgreSQL the row lock already decides; the same condition
costs nothing there.
"""

from __future__ import annotations

import sqlalchemy as db
from dagster._core.storage.event_log.schema import ConcurrencySlotsTable
from dagster._core.storage.sqlalchemy_compat import db_select
from dagster._utils.concurrency import ConcurrencySlotStatus


class ExclusivePoolSlots:
    """Mixin for SQL event log storages (before Dagster's class in the bases)."""

    def _claim_concurrency_slot(
        self, concurrency_key: str, run_id: str, step_key: str
    ) -> ConcurrencySlotStatus:
        free = db.and_(
            ConcurrencySlotsTable.c.concurrency_key == concurrency_key,
            ConcurrencySlotsTable.c.step_key == None,  # noqa: E711
            ConcurrencySlotsTable.c.deleted == False,  # noqa: E712
        )
        with self.index_connection() as conn:  # type: ignore[attr-defined]
            row = conn.execute(
                db_select([ConcurrencySlotsTable.c.id])
                .where(free)
                .with_for_update(skip_locked=True)
                .limit(1)
            ).fetchone()
            if not row:
                return ConcurrencySlotStatus.BLOCKED
            claimed = conn.execute(
                ConcurrencySlotsTable.update()
                .values(run_id=run_id, step_key=step_key)
                .where(db.and_(ConcurrencySlotsTable.c.id == row[0], free))
            ).rowcount
        return ConcurrencySlotStatus.CLAIMED if claimed else ConcurrencySlotStatus.BLOCKED
