"""Gold marts built by dbt (the project in `dbt/`), wired with dagster-dbt.

The marts (dbt/models/marts) are assets keyed like the Python assets, [schema, table] =
["gold", <model>], in group "gold". Staging and intermediate models are ephemeral (CTEs inlined
into the marts): no warehouse objects, no assets, so the graph shows only layers (DESIGN.md).
dbt sources map to the assets that write those tables (["silver", "daily_bars"], ["silver",
"symbols"], ["gold", "daily_features"]), so the marts hang off them. Each dbt test is an asset
check on its mart with dbt's severity (`error` -> ERROR and a failed run, `warn` -> WARN).

A run invokes dbt once: one `dbt build` for the selected models and their tests (dbt start-up
costs seconds, the daily increment of the marts milliseconds). What each invocation costs beyond
the SQL is kept to dbt's own start-up:
- the run's session window, ticker scope and warehouse file reach dbt in its environment, not as
  `--vars` (dbt drops its partial-parse state whenever vars change, i.e. on every run); dbt's
  first hook turns them into the SQL macros the marts' predicates read (dbt/macros/run_scope.sql);
- dbt's partial-parse state is kept between runs and seeds each invocation's target folder:
  prepared with the manifest, then kept per warehouse (dbt keys it on the warehouse path), so a
  run's dbt parses nothing unless the project changed (the first run on a new warehouse may);
- `MarketflowDbtCliResource` skips two things dagster-dbt does before each invocation that
  MarketFlow has no use for, and starts dbt warm: its start-up (Python, dbt's imports) happens
  while the run's earlier steps compute (see there and marketflow_assets/dbt_guard.py).
The incremental marts replace exactly the rows of the run's window and scope.

dbt writes to the warehouse from a subprocess. DuckDB allows one writing process per file, so
this asset runs in the warehouse pool and the Dagster process holds no connection meanwhile
(WarehouseResource closes its connections after each use).
"""

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

import dagster as dg
from filelock import FileLock
from packaging import version
from pydantic import Field, PrivateAttr

from marketflow_assets import cadence
from marketflow_assets.assets.dagster_dbt_lean import (
    DagsterDbtCliRuntimeError,
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)
from marketflow_assets.dbt_guard import (
    WARM_SOCKET_ENV,
    WORKDIR_ENV,
    start_warm_dbt,
    warm_start_supported,
)
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
# marketflow-dbt can run dbt in the warehouse's folder (dbt_guard.WORKDIR_ENV); plain dbt cannot.
_RUNS_IN_WORKDIR = Path(DBT_EXECUTABLE).name == "marketflow-dbt"
# What dbt reads to build its manifest; a manifest older than any of them is stale.
_PROJECT_SOURCES = ("dbt_project.yml", "profiles.yml", "models", "macros", "tests")
# dbt's partial-parse state, next to the manifest; dagster-dbt seeds every invocation with it.
PARTIAL_PARSE_FILE = "partial_parse.msgpack"
# The environment of a run's dbt process (read by dbt/profiles.yml and dbt/macros/run_scope.sql).
WAREHOUSE_ENV = "MARKETFLOW_DBT_WAREHOUSE"
RUN_SCOPE_ENV = "MARKETFLOW_DBT_RUN_SCOPE"
# Settings.warehouse's file name unless MARKETFLOW_WAREHOUSE names another file: the manifest is
# parsed with it (the same manifest whatever the environment; a warehouse of another name costs
# its first run one parse, then keeps its own state).
DEFAULT_WAREHOUSE_NAME = "warehouse.duckdb"
COLUMN_SCHEMA = "dagster/column_schema"
# What each dbt invocation leaves in the checkout's dbt/target (its folder: compiled SQL,
# run_results.json, dbt.log, ~2 MB; a parse state per warehouse): the newest are kept to debug
# recent runs, older ones removed, so a deployment's daily runs do not fill its disk.
KEEP_INVOCATION_FOLDERS = 20
KEEP_PARSE_STATES = 20


class MarketflowDbtCliResource(DbtCliResource):
    """dagster-dbt's `DbtCliResource` without two costs it pays before every dbt invocation,
    seconds each on the project machine (profiled), that buy MarketFlow nothing:

    - `dbt --version` in a subprocess (a whole dbt start-up) to learn dbt's version: the
      executable is this environment's dbt (`DBT_EXECUTABLE`), whose version is that of the
      installed dbt-core package;
    - a dbt adapter built in the run process (importing dbt, loading its macros), used only by
      `fetch_column_metadata()` / `fetch_row_counts()` on the event stream, which MarketFlow
      does not call (the marts' schemas are their enforced dbt contracts). dagster-dbt already
      runs without one when it cannot build it, and for the dbt Fusion engine.

    Both override private members of dagster-dbt (pinned in requirements.lock);
    test_dbt_marts checks they still exist, so an upgrade that renames them fails loudly.

    And it starts dbt warm: when a run initialises this resource (at the start of an in-process
    run, before its first step), it starts a dbt process that imports dbt meanwhile
    (`dbt_guard.start_warm_dbt`); the run's first dbt invocation is handed to it
    (`warm_start_environment`), saving dbt's start-up, seconds, from the dbt step.
    """

    warm_start: bool = Field(
        default=True,
        description=(
            "Start a dbt process when the run starts, importing dbt while the run's other steps "
            "compute, and hand it the run's first dbt invocation (Linux; see "
            "marketflow_assets/dbt_guard.py). False: every invocation starts dbt cold."
        ),
    )
    _warm: tuple[subprocess.Popen, str] | None = PrivateAttr(default=None)
    _warm_handed: bool = PrivateAttr(default=False)

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:  # type: ignore[override]
        return None

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        super().setup_for_execution(context)
        if self.warm_start and warm_start_supported():
            self._warm = start_warm_dbt()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """Reap the warm dbt: it has ended if it served an invocation (which waits for it); an
        unused one, or one still running after its step was interrupted, is killed."""
        if self._warm is not None:
            process, _ = self._warm
            if process.poll() is None:
                process.kill()
            process.wait()
        super().teardown_after_execution(context)

    def warm_start_environment(self) -> dict[str, str]:
        """What to add to the environment of the next dbt invocation to hand it to the warm
        dbt: once (a warm dbt serves one invocation); {} after, or without one."""
        warm, self._warm_handed = (None if self._warm_handed else self._warm), True
        if warm is None or warm[0].poll() is not None:
            return {}
        return {WARM_SOCKET_ENV: warm[1]}


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
    """The manifest and dbt's partial-parse state exist and are newer than every file and folder
    dbt parses."""
    newest = _newest_source_mtime(project.project_dir)
    return all(
        path.exists() and path.stat().st_mtime >= newest
        for path in (project.manifest_path, project.manifest_path.with_name(PARTIAL_PARSE_FILE))
    )


_environment_lock = threading.Lock()


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """`values` in os.environ for the block, restored after. dagster-dbt hands the dbt process a
    copy of os.environ taken when `DbtCliResource.cli` starts it (its maintainers' way to give
    one invocation its own variables, dagster-io/dagster#29656); the lock keeps two steps of one
    process from mixing theirs."""
    with _environment_lock:
        saved = {name: os.environ.get(name) for name in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def prepare_manifest(project: DbtProject) -> Path:
    """Make `target/manifest.json` and `target/partial_parse.msgpack` exist and be newer than
    every project file.

    `@dbt_assets` reads the manifest when the code is imported, and a fresh clone has none. A
    `dbt parse` (about 5 s here, once) runs only when the manifest is missing or older than a model,
    macro or config file, so `dagster asset materialize`, `make test`, `make demo` and
    `make dev` work from a fresh clone, and edits are picked up on the next code load. This is
    instead of `DbtProject.prepare_if_dev()`, which parses again on every load under
    `dagster dev`, each run's process included. Concurrent processes (pytest-xdist workers, the
    dev code server and its runs) serialise on a lock, and the manifest is moved into place
    whole, so no process reads a half-written one. (A packaged deployment would run
    `dagster-dbt project prepare-and-package` at build time instead.)

    The partial-parse state is what makes each run's `dbt build` skip parsing: dagster-dbt copies
    it into the invocation's own target folder, and it stays valid as long as the project files,
    the dbt version and the vars (none: see `dbt_run_environment`) are those it was parsed with.
    """
    manifest = project.manifest_path
    if manifest_is_fresh(project):
        return manifest
    manifest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(manifest.with_name("manifest.json.lock"), timeout=300):
        if manifest_is_fresh(project):  # another process parsed while this one waited
            return manifest
        scratch = Path(tempfile.mkdtemp(prefix="parse-", dir=manifest.parent))
        # Parsed with the warehouse as runs name it (its default file name, see
        # `dbt_run_environment`), so the state serves their dbt without a parse.
        parse_environment = {WAREHOUSE_ENV: DEFAULT_WAREHOUSE_NAME} if _RUNS_IN_WORKDIR else {}
        try:
            with _environment(parse_environment):
                MarketflowDbtCliResource(
                    project_dir=os.fspath(project.project_dir), dbt_executable=DBT_EXECUTABLE
                ).cli(["parse", "--quiet"], target_path=scratch).wait()
            # Atomic renames: readers never see half a file. The state first: a fresh manifest
            # promises a fresh state (manifest_is_fresh).
            (scratch / PARTIAL_PARSE_FILE).replace(manifest.with_name(PARTIAL_PARSE_FILE))
            (scratch / "manifest.json").replace(manifest)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return manifest


dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR)
prepare_manifest(dbt_project)
dbt_resource = MarketflowDbtCliResource(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE)


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

    def get_metadata(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, Any]:
        """dagster-dbt's metadata, with the column schema of a model's enforced contract (names,
        types, descriptions and NOT NULL) as `dagster/column_schema`; see `contract_column_schema`."""
        metadata = dict(super().get_metadata(dbt_resource_props))
        schema = contract_column_schema(dbt_resource_props)
        if schema is not None:
            metadata[COLUMN_SCHEMA] = schema
        return metadata


def contract_column_schema(dbt_resource_props: Mapping[str, Any]) -> dg.TableSchema | None:
    """The columns of a model whose dbt contract is enforced, read from the manifest when the
    code loads (no warehouse query, no dbt adapter in the run process); None for other nodes.

    An enforced contract makes `dbt build` fail unless the built table has exactly these column
    names and types, so after a successful build this is the table's schema. That is why each
    mart materialization carries it (`with_contract_schema`) and Dagster's
    `column_schema_change` check can compare consecutive materializations, as for the Python
    tables, without `fetch_column_metadata()` (an adapter and a query per mart per run). Measured
    (`python -m marketflow_assets.benchmark.dbt_schema_cost`, marts over 20 sessions, 3 rounds
    alternating): dbt step 0.88x, run 0.91x of before, i.e. no cost above the noise."""
    contract = (dbt_resource_props.get("config") or {}).get("contract") or {}
    columns = dbt_resource_props.get("columns") or {}
    if not contract.get("enforced") or not columns:
        return None
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=name,
                type=column.get("data_type") or "?",
                description=column.get("description") or None,
                constraints=dg.TableColumnConstraints(
                    nullable=not any(
                        c.get("type") == "not_null" for c in column.get("constraints") or ()
                    )
                ),
            )
            for name, column in columns.items()
        ]
    )


def with_contract_schema(context: dg.AssetExecutionContext, event: Any) -> Any:
    """A mart's materialization (`Output`) with its contract's column schema in its metadata."""
    if not isinstance(event, dg.Output):
        return event
    key = context.asset_key_for_output(event.output_name)
    schema = context.assets_def.specs_by_key[key].metadata.get(COLUMN_SCHEMA)
    if schema is None:
        return event
    return event.with_metadata({**event.metadata, COLUMN_SCHEMA: schema})


class DbtBuildConfig(dg.Config):
    full_refresh: bool = Field(
        default=False,
        description=(
            "Rebuild the selected models from all the history in the warehouse (dbt "
            "--full-refresh), whatever the partition window and ticker scope of the run. Needed "
            "after a mart's columns change (the marts fail on schema drift)."
        ),
    )


def dbt_run_environment(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dict[str, str]:
    """The environment of the run's dbt process (dbt/profiles.yml, dbt/macros/run_scope.sql):
    the warehouse file, the first and last session of the partition window (None without
    partitions, e.g. a run of checks only: the whole history), and the tickers of a
    ticker-scoped run (None = all). Not `--vars`: dbt re-parses the whole project whenever its
    vars change, which for a window is every run.

    The warehouse reaches dbt as its file name, dbt running in its folder (marketflow-dbt changes
    into `WORKDIR_ENV`): dbt keys its partial-parse state on the profile's values, the path
    included, so one state then serves every home whose warehouse has that name (another home,
    a moved or copied one: each test's own), instead of a full parse on each new path."""
    sessions = sessions_of(context)
    scope = ticker_scope(context)
    run_scope = {
        "start_date": sessions[0].isoformat() if sessions else None,
        "end_date": sessions[-1].isoformat() if sessions else None,
        "tickers": list(scope) if scope is not None else None,
    }
    # Resolved: the warehouse path may be relative to this process's directory, not dbt's.
    warehouse_file = Path(warehouse.database).resolve()
    if not _RUNS_IN_WORKDIR:  # plain dbt runs in the project folder: the whole path
        return {WAREHOUSE_ENV: str(warehouse_file), RUN_SCOPE_ENV: json.dumps(run_scope)}
    return {
        WAREHOUSE_ENV: warehouse_file.name,
        WORKDIR_ENV: str(warehouse_file.parent),
        RUN_SCOPE_ENV: json.dumps(run_scope),
    }


def _parse_state_cache(project: DbtProject, warehouse_path: str) -> Path:
    """Where the partial-parse state of dbt runs on this warehouse is kept between runs.

    dbt keys its parse state on the profile's connection values, the warehouse path included, so
    the state prepared with the manifest (parsed with the environment's default warehouse) serves
    only runs with that path. Runs keep theirs here, one file per warehouse path as dbt sees it
    (its file name, see `dbt_run_environment`: one for every home), in this checkout's dbt target
    folder."""
    key = hashlib.sha256(warehouse_path.encode()).hexdigest()[:16]
    return project.project_dir / project.target_path / "partial_parse" / f"{key}.msgpack"


def _invocation_target_path(context: dg.AssetExecutionContext, project: DbtProject) -> Path:
    """A fresh target folder for one dbt invocation, named as dagster-dbt names its own
    (`<op>-<run id[:7]>-<random>`), so artifacts and logs of concurrent runs never mix."""
    name = f"{context.op_execution_context.op.name}-{context.run.run_id[:7]}-{uuid.uuid4().hex[:7]}"
    return project.project_dir / project.target_path / name


def prune_dbt_target(target: Path, op_name: str) -> None:
    """Keep the newest `KEEP_INVOCATION_FOLDERS` invocation folders of `op_name` and the newest
    `KEEP_PARSE_STATES` parse states in `target`; nothing else there is touched. A running
    invocation's folder is among the newest (created when it started)."""
    folders = [path for path in target.glob(f"{op_name}-*") if path.is_dir()]
    for folder in _all_but_newest(folders, KEEP_INVOCATION_FOLDERS):
        shutil.rmtree(folder, ignore_errors=True)
    for state in _all_but_newest(
        list((target / "partial_parse").glob("*.msgpack")), KEEP_PARSE_STATES
    ):
        state.unlink(missing_ok=True)


def _all_but_newest(paths: list[Path], keep: int) -> list[Path]:
    def modified(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except FileNotFoundError:  # removed meanwhile by another run's prune
            return 0.0

    return sorted(paths, key=modified, reverse=True)[keep:]


def _copy_atomically(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}")
    shutil.copyfile(source, partial)
    partial.replace(destination)


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
    args = ["build"]
    if config.full_refresh:
        args.append("--full-refresh")
    environment = dbt_run_environment(context, warehouse)
    if isinstance(dbt, MarketflowDbtCliResource):
        environment.update(dbt.warm_start_environment())
    target_path = _invocation_target_path(context, dbt_project)
    parse_state = _parse_state_cache(dbt_project, environment[WAREHOUSE_ENV])
    if parse_state.exists():  # else dagster-dbt seeds it with the state prepared with the manifest
        _copy_atomically(parse_state, target_path / PARTIAL_PARSE_FILE)
    try:
        # dbt opens the warehouse file itself: hold the warehouse lock for the whole build.
        with warehouse.lock("dbt build"):
            with _environment(environment):
                # Starts dbt with this environment.
                invocation = dbt.cli(args, context=context, target_path=target_path)
            try:
                for event in invocation.stream():
                    fault_point("dbt.build")
                    yield with_contract_schema(context, event)
            finally:
                # dbt writes its state right after parsing: valid even when a model failed.
                if (target_path / PARTIAL_PARSE_FILE).exists():
                    _copy_atomically(target_path / PARTIAL_PARSE_FILE, parse_state)
                prune_dbt_target(target_path.parent, context.op_execution_context.op.name)
    except DagsterDbtCliRuntimeError as exc:
        # Only a warehouse held by another process is worth a retry; a failing dbt test or
        # model is not (retrying it would rebuild the marts for nothing).
        if DUCKDB_LOCK_ERROR in str(exc):
            raise dg.RetryRequested(
                max_retries=WAREHOUSE_RETRY_POLICY.max_retries, seconds_to_wait=5
            ) from exc
        raise
