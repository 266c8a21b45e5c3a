"""Gold marts built by dbt (the project in `dbt/`), wired with dagster-dbt.

The marts (dbt/models/marts) are assets keyed like the Python assets, [schema, table] =
["gold", <model>], in group "gold". Staging and intermediate models are ephemeral (CTEs inlined
into the marts): no warehouse objects, no assets, so the graph shows only layers (DESIGN.md).
dbt sources map to the assets that write those tables (["silver", "daily_bars"], ["silver",
"symbols"], ["gold", "daily_features"]), so the marts hang off them. Each dbt test is an asset
check on its mart with dbt's severity (`error` -> ERROR and a failed run, `warn` -> WARN).

A run invokes dbt once: one `dbt build` for the selected models and their tests (dbt start-up
costs seconds, the daily increment of the marts milliseconds). The run's session window and
ticker scope go to dbt as vars; the incremental marts replace exactly those rows.

dbt writes to the warehouse from a subprocess. DuckDB allows one writing process per file, so
this asset runs in the warehouse pool and the Dagster process holds no connection meanwhile
(WarehouseResource closes its connections after each use).
"""

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtCliRuntimeError,
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)
from filelock import FileLock
from pydantic import Field

from marketflow_assets import cadence
from marketflow_assets.faults import fault_point
from marketflow_assets.partitions import sessions_of, sessions_partitions_def
from marketflow_assets.resources import WAREHOUSE_POOL, WAREHOUSE_RETRY_POLICY, ticker_scope
from marketflow_assets.storage.warehouse import WarehouseResource

DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt"  # the repository's dbt/
DUCKDB_LOCK_ERROR = "Could not set lock on file"
# The dbt of this interpreter's environment: the Makefile runs .venv/bin/* without activating
# the venv, so `dbt` is often not on PATH. `marketflow-dbt` (dbt_guard.py) is dbt that dies with
# the run process, so a killed run leaves no dbt writing the warehouse behind it.
_BIN = str(Path(sys.executable).parent)
DBT_EXECUTABLE = (
    shutil.which("marketflow-dbt", path=_BIN) or shutil.which("dbt", path=_BIN) or "dbt"
)
# What dbt reads to build its manifest; a manifest older than any of them is stale.
_PROJECT_SOURCES = ("dbt_project.yml", "profiles.yml", "models", "macros", "tests")


def _newest_source_mtime(project_dir: Path) -> float:
    newest = 0.0
    for name in _PROJECT_SOURCES:
        path = project_dir / name
        if not path.exists():
            continue
        # Directories too: deleting or renaming a file only touches its directory.
        for item in (path, *path.rglob("*")) if path.is_dir() else (path,):
            newest = max(newest, item.stat().st_mtime)
    return newest


def manifest_is_fresh(project: DbtProject) -> bool:
    """The manifest exists and is newer than every file and folder dbt parses."""
    manifest = project.manifest_path
    return manifest.exists() and manifest.stat().st_mtime >= _newest_source_mtime(
        project.project_dir
    )


def prepare_manifest(project: DbtProject) -> Path:
    """Make `target/manifest.json` exist and be newer than every project file.

    `@dbt_assets` reads the manifest when the code is imported, and a fresh clone has none. A
    `dbt parse` (about 5 s here, once) runs only when the manifest is missing or older than a model,
    macro or config file, so `dagster asset materialize`, `make test`, `make demo` and
    `make dev` work from a fresh clone, and edits are picked up on the next code load. This is
    instead of `DbtProject.prepare_if_dev()`, which parses again on every load under
    `dagster dev`, each run's process included. Concurrent processes (pytest-xdist workers, the
    dev code server and its runs) serialise on a lock, and the manifest is moved into place
    whole, so no process reads a half-written one. (A packaged deployment would run
    `dagster-dbt project prepare-and-package` at build time instead.)
    """
    manifest = project.manifest_path
    if manifest_is_fresh(project):
        return manifest
    manifest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(manifest.with_name("manifest.json.lock"), timeout=300):
        if manifest_is_fresh(project):  # another process parsed while this one waited
            return manifest
        scratch = Path(tempfile.mkdtemp(prefix="parse-", dir=manifest.parent))
        try:
            DbtCliResource(
                project_dir=os.fspath(project.project_dir), dbt_executable=DBT_EXECUTABLE
            ).cli(["parse", "--quiet"], target_path=scratch).wait()
            (scratch / "manifest.json").replace(manifest)  # atomic: readers never see half a file
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return manifest


dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR)
prepare_manifest(dbt_project)
dbt_resource = DbtCliResource(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE)


class MarketflowDbtTranslator(DagsterDbtTranslator):
    """Asset key = [schema, table] and group = schema, the layer convention of the Python
    assets (DESIGN.md): model `gold.ma_crossovers` -> ["gold", "ma_crossovers"] in group "gold";
    source `silver.daily_bars` -> ["silver", "daily_bars"], the Python asset writing that table.
    """

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        table = dbt_resource_props.get("alias") or dbt_resource_props.get("identifier")
        return dg.AssetKey([dbt_resource_props["schema"], table or dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return dbt_resource_props["schema"]

    def get_tags(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, str]:
        """The mart's cadence (`meta.cadence` in dbt, see marketflow_assets/cadence.py), so
        schedules and sensors select dbt marts the same way as the Python assets."""
        meta = (
            dbt_resource_props.get("config", {}).get("meta") or dbt_resource_props.get("meta") or {}
        )
        return {**super().get_tags(dbt_resource_props), cadence.TAG: meta.get("cadence", "daily")}


class DbtBuildConfig(dg.Config):
    full_refresh: bool = Field(
        default=False,
        description=(
            "Rebuild the selected models from all the history in the warehouse (dbt "
            "--full-refresh), whatever the partition window and ticker scope of the run. Needed "
            "after a mart's columns change (the marts fail on schema drift)."
        ),
    )


def dbt_vars(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dict[str, str | list[str] | None]:
    """The run's scope for dbt (see dbt/dbt_project.yml): the warehouse file, the first and last
    session of the partition window (None without partitions, e.g. a run of checks only: the
    whole history), and the tickers of a ticker-scoped run (None = all)."""
    sessions = sessions_of(context)
    scope = ticker_scope(context)
    return {
        # Absolute: dbt runs in the project directory, the warehouse path may be relative.
        "warehouse_path": str(Path(warehouse.database).resolve()),
        "start_date": sessions[0].isoformat() if sessions else None,
        "end_date": sessions[-1].isoformat() if sessions else None,
        "tickers": list(scope) if scope is not None else None,
    }


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=MarketflowDbtTranslator(
        settings=DagsterDbtTranslatorSettings(enable_asset_checks=True)
    ),
    partitions_def=sessions_partitions_def,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=WAREHOUSE_POOL,
)
def dbt_marts(
    context: dg.AssetExecutionContext,
    dbt: DbtCliResource,
    warehouse: WarehouseResource,
    config: DbtBuildConfig,
) -> Iterator[Any]:
    """One `dbt build` of the selected models and their tests over the run's window."""
    args = ["build", "--vars", json.dumps(dbt_vars(context, warehouse))]
    if config.full_refresh:
        args.append("--full-refresh")
    try:
        # dbt opens the warehouse file itself: hold the warehouse lock for the whole build.
        with warehouse.lock("dbt build"):
            for event in dbt.cli(args, context=context).stream():
                fault_point("dbt.build")
                yield event
    except DagsterDbtCliRuntimeError as exc:
        # Only a warehouse held by another process is worth a retry; a failing dbt test or
        # model is not (retrying it would rebuild the marts for nothing).
        if DUCKDB_LOCK_ERROR in str(exc):
            raise dg.RetryRequested(
                max_retries=WAREHOUSE_RETRY_POLICY.max_retries, seconds_to_wait=5
            ) from exc
        raise
