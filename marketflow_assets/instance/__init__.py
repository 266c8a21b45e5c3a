"""Dagster instance storage for MarketFlow: event log storages that write event batches for real.

`dagster.yaml` (SQLite, `make dev`) and `instance/dagster.postgres.yaml` (deployments) name the
classes in `batched_events.py`; `DAGSTER_EVENT_BATCH_SIZE` (set by the Makefile) makes Dagster
hand them batches. Their pool slots are claimed by one step at a time even on SQLite
(`pool_slots.py`).
"""
