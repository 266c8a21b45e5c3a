"""One declaration per warehouse table asset: its contract gives everything but the body.

    @table_asset(
        contracts.SYMBOLS,
        cadence=cadence.REFERENCE,
        kinds={"sql"},
        deps=[bronze.COMPANY_PROFILES],
    )
    def silver_symbols(universe: UniverseResource) -> TableWrite: ...

From the `TableContract`: the key (`schema.name`), the group (the schema), the description,
the column schema and table name (`asset_metadata`), and the partitions (the session partitions
when the contract has a `partition_column`, none otherwise). The same for every warehouse table:
the warehouse IO manager (which writes the returned `TableWrite` to the contract's table), the
warehouse pool and retry policy, `duckdb` among the kinds, and a single-run backfill policy (a
range is one run, replaced in one transaction; for an unpartitioned table downstream of a range,
one materialization). What the asset says itself: its cadence (a tag the schedules and sensors
select on), how it computes (extra kinds: `sql`, `pandas`, ...), its upstream assets, and any
other `dg.asset` argument it needs (`ins`, ...). An upstream warehouse table is named by its
contract (`deps=[silver.DAILY_BARS]`): a misspelt key would be a silent external asset, a
misspelt contract fails at import.

`table_spec` gives the same attributes as an `AssetSpec`, for a multi-asset writing several
tables from one computation (`table_multi_asset`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import dagster as dg

from marketflow_assets.contracts import TableContract
from marketflow_assets.partitions import sessions_partitions_def
from marketflow_assets.resources import WAREHOUSE_POOL, WAREHOUSE_RETRY_POLICY

WAREHOUSE_IO_MANAGER = "warehouse_io_manager"
WAREHOUSE_KIND = "duckdb"
# Asset arguments the contract (or the warehouse) decides; an asset passing one is a mistake.
_DERIVED = frozenset(
    {
        "key",
        "name",
        "key_prefix",
        "group_name",
        "description",
        "metadata",
        "partitions_def",
        "io_manager_key",
        "pool",
        "retry_policy",
        "backfill_policy",
        "tags",
        "kinds",
    }
)


def table_partitions(contract: TableContract) -> dg.PartitionsDefinition | None:
    """The session partitions (the placeholder `build_definitions` binds) for a contract with a
    partition column; none for a whole-table contract."""
    if contract.partition_column is None:
        return None
    if contract.partition_column != "session_date":
        raise ValueError(
            f"{contract.table}: partition column {contract.partition_column!r}; table assets "
            "are partitioned by session (`session_date`) or not at all"
        )
    return sessions_partitions_def


Dep = TableContract | dg.AssetKey | dg.AssetsDefinition | dg.AssetDep


def _deps(deps: Sequence[Dep]) -> list[dg.AssetKey | dg.AssetsDefinition | dg.AssetDep]:
    return [d.asset_key if isinstance(d, TableContract) else d for d in deps]


def _kinds(contract: TableContract, kinds: Iterable[str]) -> set[str]:
    extra = set(kinds)
    if not extra:
        raise ValueError(f"{contract.table}: say how the asset computes (kinds, e.g. {{'sql'}})")
    return {WAREHOUSE_KIND, *extra}


def table_spec(
    contract: TableContract,
    *,
    cadence: Mapping[str, str],
    kinds: Iterable[str],
    deps: Sequence[Dep] = (),
) -> dg.AssetSpec:
    """The `AssetSpec` of the asset writing `contract`'s table (for `table_multi_asset`)."""
    return dg.AssetSpec(
        key=contract.asset_key,
        group_name=contract.schema,
        kinds=_kinds(contract, kinds),
        tags=dict(cadence),
        description=contract.description,
        metadata=contract.asset_metadata(),
        deps=_deps(deps),
        partitions_def=table_partitions(contract),
    ).with_io_manager_key(WAREHOUSE_IO_MANAGER)


def table_asset(
    contract: TableContract,
    *,
    cadence: Mapping[str, str],
    kinds: Iterable[str],
    deps: Sequence[Dep] = (),
    **asset_args: Any,
) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """`@dg.asset` for the asset writing `contract`'s table (see the module docstring); the body
    returns a `TableWrite`. `asset_args` are further `dg.asset` arguments (`ins`, ...)."""
    derived = _DERIVED & set(asset_args)
    if derived:
        raise TypeError(
            f"{contract.table}: {', '.join(sorted(derived))} come from the contract "
            "(marketflow_assets/assets/table_asset.py)"
        )
    return dg.asset(
        key=contract.asset_key,
        tags=dict(cadence),
        group_name=contract.schema,
        kinds=_kinds(contract, kinds),
        deps=_deps(deps) or None,
        partitions_def=table_partitions(contract),
        backfill_policy=dg.BackfillPolicy.single_run(),
        io_manager_key=WAREHOUSE_IO_MANAGER,
        pool=WAREHOUSE_POOL,
        retry_policy=WAREHOUSE_RETRY_POLICY,
        description=contract.description,
        metadata=contract.asset_metadata(),
        **asset_args,
    )


def table_multi_asset(
    *specs: dg.AssetSpec, name: str, **asset_args: Any
) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """`@dg.multi_asset` over `table_spec`s: one computation writing several tables, with the
    warehouse pool, retry and backfill policies; the specs must share their partitions."""
    partitions = {spec.partitions_def for spec in specs}
    if len(partitions) != 1:
        raise ValueError(f"{name}: the tables of one multi-asset must share their partitions")
    return dg.multi_asset(
        name=name,
        specs=list(specs),
        partitions_def=partitions.pop(),
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        retry_policy=WAREHOUSE_RETRY_POLICY,
        **asset_args,
    )
