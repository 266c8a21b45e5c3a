"""Two runs' steps never hold the one `duckdb_warehouse` slot at once (instance/pool_slots.py).

The race is replayed deterministically: run A has selected the free slot row and is about to
claim it when run B, already assigned by the pool's queue as happens when both asked within
milliseconds, claims the same row.
"""

from __future__ import annotations

import pytest
import sqlalchemy as db
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._utils.concurrency import ConcurrencySlotStatus

from marketflow_assets.instance.batched_events import BatchedSqliteEventLogStorage
from marketflow_assets.resources import WAREHOUSE_POOL

STEP = "silver__daily_bars"


def claim_while_other_run_claims(storage_class, tmp_path):
    """Run A's claim, with run B's whole claim slipped in just before A writes the slot row."""
    run_a, run_b = storage_class(str(tmp_path)), storage_class(str(tmp_path))
    run_a.set_concurrency_slots(WAREHOUSE_POOL, 1)
    for storage, run_id in ((run_a, "run-a"), (run_b, "run-b")):
        storage.add_pending_step(WAREHOUSE_POOL, run_id, STEP, should_assign=True)
    b_status = []

    def run_b_claims_first(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("UPDATE CONCURRENCY_SLOTS") and not b_status:
            b_status.append(None)  # once: run B's own claim passes through here too
            b_status[0] = run_b.claim_concurrency_slot(WAREHOUSE_POOL, "run-b", STEP)

    db.event.listen(db.engine.Engine, "before_cursor_execute", run_b_claims_first)
    try:
        a_status = run_a.claim_concurrency_slot(WAREHOUSE_POOL, "run-a", STEP)
    finally:
        db.event.remove(db.engine.Engine, "before_cursor_execute", run_b_claims_first)
    holders = {
        (slot.run_id, slot.step_key)
        for slot in run_a.get_concurrency_info(WAREHOUSE_POOL).claimed_slots
    }
    return a_status.slot_status, b_status[0].slot_status, holders, run_a


def test_the_slot_goes_to_one_run_when_both_claim_it_at_once(tmp_path):
    a, b, holders, _ = claim_while_other_run_claims(BatchedSqliteEventLogStorage, tmp_path)
    assert (a, b) == (ConcurrencySlotStatus.BLOCKED, ConcurrencySlotStatus.CLAIMED)
    assert holders == {("run-b", STEP)}


def test_the_run_that_lost_the_race_gets_the_slot_once_it_is_freed(tmp_path):
    _, _, _, run_a = claim_while_other_run_claims(BatchedSqliteEventLogStorage, tmp_path)
    assert (
        run_a.claim_concurrency_slot(WAREHOUSE_POOL, "run-a", STEP).slot_status
        == ConcurrencySlotStatus.BLOCKED
    )
    run_a.free_concurrency_slot_for_step("run-b", STEP)
    assert (
        run_a.claim_concurrency_slot(WAREHOUSE_POOL, "run-a", STEP).slot_status
        == ConcurrencySlotStatus.CLAIMED
    )


def test_dagsters_own_sqlite_storage_gives_the_slot_to_both(tmp_path):
    """The defect the mixin removes, so this test notices if Dagster fixes or changes it."""
    a, b, holders, _ = claim_while_other_run_claims(SqliteEventLogStorage, tmp_path)
    if a == ConcurrencySlotStatus.BLOCKED:
        pytest.skip("Dagster's own claim is exclusive now: instance/pool_slots.py can go")
    assert (a, b) == (ConcurrencySlotStatus.CLAIMED, ConcurrencySlotStatus.CLAIMED)
    assert len(holders) == 1  # one slot row, overwritten: run A runs without holding it
