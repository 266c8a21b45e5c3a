"""serving/snapshot: publish what users read as an immutable, versioned read-only snapshot."""

from collections.abc import Iterable
from pathlib import Path

import dagster as dg

from marketflow_assets import cadence
from marketflow_assets.resources import WAREHOUSE_POOL, WAREHOUSE_RETRY_POLICY
from marketflow_assets.serving.layout import CURRENT
from marketflow_assets.serving.parquet_copy import ParquetCopy
from marketflow_assets.serving.publish import publish_snapshot
from marketflow_assets.storage.lake import LakeResource
from marketflow_assets.storage.warehouse import WarehouseResource

SNAPSHOT_KEY = dg.AssetKey(["serving", "snapshot"])
SERVED_LAYERS = ("silver", "gold")
# DuckDB's memory for a publish (sorting each table into the snapshot, the Parquet months): a
# full publish of 500 tickers x 2,520 sessions took +832 MiB of RSS at the warehouse's 1 GB and
# +401 MiB at this (1.17x the time; the sorts spill); an incremental publish needs far less.
PUBLISH_MEMORY_LIMIT = "400MB"


class SnapshotConfig(dg.Config):
    full_rebuild: bool = False
    """Build the snapshot from scratch instead of from the previous one (e.g. after a restore)."""


def served_asset_keys(assets: Iterable[dg.AssetsDefinition]) -> list[dg.AssetKey]:
    """The warehouse tables a snapshot copies: every silver and gold asset that is a table
    (not the HTML reports)."""
    keys = []
    for asset in assets:
        for spec in asset.specs:
            if spec.key.path[0] in SERVED_LAYERS and "html" not in spec.kinds:
                keys.append(spec.key)
    return sorted(keys, key=lambda k: k.to_user_string())


def build_snapshot_asset(upstream: list[dg.AssetKey]) -> dg.AssetsDefinition:
    """`serving/snapshot`, downstream of every served asset `upstream` (so it publishes after
    them in any run that contains them)."""

    @dg.asset(
        key=SNAPSHOT_KEY,
        deps=upstream,
        group_name="serving",
        kinds={"duckdb", "parquet"},
        tags=cadence.DAILY,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        retry_policy=WAREHOUSE_RETRY_POLICY,
    )
    def serving_snapshot(
        context: dg.AssetExecutionContext,
        config: SnapshotConfig,
        warehouse: WarehouseResource,
        lake: LakeResource,
    ) -> dg.MaterializeResult:
        """An immutable, versioned read-only copy of the served tables (silver bars, symbols,
        corporate actions, rejected rows, recent intraday; gold features, fundamentals and
        marts; ops.check_results) with a manifest (`serving.manifest`), published atomically
        as `$MARKETFLOW_HOME/serving/current.duckdb`, plus the same tables as date-partitioned
        Parquet. Built incrementally from the previous snapshot: only what the warehouse's
        change journal (for dbt marts: fingerprints) says changed is rewritten, and nothing
        when nothing changed. The API, Superset and ad-hoc SQL read it; none of them opens the
        warehouse, so readers never block a run."""
        root = _serving_root(lake)
        store = lake.remote_store()
        with warehouse.get_connection() as con:
            con.execute(f"SET memory_limit = '{PUBLISH_MEMORY_LIMIT}'")
            result = publish_snapshot(
                con,
                root,
                run_id=context.run.run_id,
                full_rebuild=config.full_rebuild,
                parquet=ParquetCopy(root, store),
            )
        if result.unchanged:
            context.log.info(
                f"nothing served changed since snapshot {result.snapshot_id}: it stays current"
            )
        else:
            context.log.info(
                f"published snapshot {result.snapshot_id} ({result.rows_written:,} rows written, "
                f"{sum(result.seconds.values()):.2f} s); removed {result.removed or 'none'}"
            )
        tables = {
            name: {
                "mode": t.mode,
                "rows": t.rows,
                "rows_written": t.rows_written,
                "latest_session": t.latest_session.isoformat() if t.latest_session else None,
                "seconds": t.seconds,
            }
            for name, t in result.tables.items()
        }
        return dg.MaterializeResult(
            metadata={
                "snapshot_id": result.snapshot_id,
                "unchanged": dg.MetadataValue.bool(result.unchanged),
                "previous_snapshot_id": result.previous_id or "none",
                "path": dg.MetadataValue.path(str(root / CURRENT)),
                "snapshot_file": dg.MetadataValue.path(str(result.path)),
                "rows_written": dg.MetadataValue.int(result.rows_written),
                "parquet_files_written": dg.MetadataValue.int(result.parquet_files_written),
                "seconds": dg.MetadataValue.json(result.seconds),
                "parquet_seconds": dg.MetadataValue.json(result.parquet_seconds),
                "tables": dg.MetadataValue.json(tables),
                "removed_snapshots": ", ".join(result.removed) or "none",
                "journal_pruned": dg.MetadataValue.int(result.journal_pruned),
            }
        )

    return serving_snapshot


def _serving_root(lake: LakeResource) -> Path:
    """$MARKETFLOW_HOME/serving: the lake's local root is always $MARKETFLOW_HOME/lake."""
    return Path(lake.local_root).absolute().parent / "serving"
