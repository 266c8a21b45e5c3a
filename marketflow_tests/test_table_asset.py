"""A new warehouse table is its contract, its transform and `@table_asset`: the factory and
the contract registry give it the key, group, kinds, partitions, policies, IO manager,
column schema and generic checks, and the daily selection picks it up, with no other list to
edit. Misuse (an argument the contract decides, a partition column that is not the session)
fails at import with the table's name."""

import re
import types

import dagster as dg
import pandas as pd
import pandera.pandas as pa
import pytest

from marketflow_assets import cadence
from marketflow_assets.assets.table_asset import table_asset, table_multi_asset, table_spec
from marketflow_assets.contracts import CONTRACTS, LAYER_MODULES, Col, TableContract, contracts_of
from marketflow_assets.contracts import gold as gold_contracts
from marketflow_assets.contracts import silver as silver_contracts
from marketflow_assets.domains import Deployment, domain_definitions
from marketflow_assets.instance.batched_events import batched_ephemeral_instance
from marketflow_assets.partitions import sessions_of
from marketflow_assets.resources import WAREHOUSE_POOL, WAREHOUSE_RETRY_POLICY, UniverseResource
from marketflow_assets.storage.warehouse import TableWrite
from marketflow_tests.helpers import make_settings, query

SESSION_RANGES = TableContract(
    table="gold.session_ranges",
    description="A made-up gold table: a number per ticker and session, never negative.",
    columns=(
        Col("ticker", "VARCHAR", "Yahoo symbol."),
        Col("session_date", "DATE", "Session."),
        Col("day_range", "DOUBLE", "High minus low.", checks=(pa.Check.ge(0, error="non-neg"),)),
    ),
    key=("ticker", "session_date"),
)
KEY = dg.AssetKey(["gold", "session_ranges"])
BAD_TICKER = "KO"


@table_asset(
    SESSION_RANGES,
    cadence=cadence.DAILY,
    kinds={"pandas"},
    deps=[silver_contracts.DAILY_BARS],  # an upstream table, named by its contract
)
def gold_session_ranges(
    context: dg.AssetExecutionContext, universe: UniverseResource
) -> TableWrite:
    """One row per universe ticker and session of the run; KO's is negative, which the
    generic contract check must catch."""
    rows = pd.MultiIndex.from_product(
        [universe.symbols(), pd.to_datetime(sessions_of(context))],
        names=["ticker", "session_date"],
    ).to_frame(index=False)
    rows["day_range"] = (rows["ticker"] != BAD_TICKER).map({True: 1.5, False: -1.0})
    return TableWrite(rows=rows)


@pytest.fixture
def declared(monkeypatch):
    """The contract as if written in contracts/gold.py: registered by being defined there."""
    monkeypatch.setattr(gold_contracts, "SESSION_RANGES", SESSION_RANGES, raising=False)
    registered = contracts_of(LAYER_MODULES)
    assert registered[SESSION_RANGES.table] is SESSION_RANGES
    monkeypatch.setitem(CONTRACTS, SESSION_RANGES.table, SESSION_RANGES)


@pytest.fixture
def domain(declared, tmp_path):
    settings = make_settings(tmp_path)
    deployment = Deployment.from_settings(settings)
    return settings, deployment, domain_definitions(deployment, assets=[gold_session_ranges])


def test_a_contract_and_a_body_become_a_complete_warehouse_asset(domain):
    _, deployment, defs = domain
    graph = defs.resolve_asset_graph()
    node = graph.get(KEY)
    assert node.group_name == "gold"
    assert node.kinds == {"duckdb", "pandas"}
    assert node.tags[cadence.TAG] == "daily"
    assert node.partitions_def == deployment.partitions_def  # the real sessions, bound
    assert node.backfill_policy == dg.BackfillPolicy.single_run()
    assert node.pools == {WAREHOUSE_POOL}
    assert set(node.parent_keys) == {dg.AssetKey(["silver", "daily_bars"])}
    assert node.description == SESSION_RANGES.description
    assert node.metadata["dagster/column_schema"] == SESSION_RANGES.column_schema()
    assert node.metadata["dagster/table_name"] == "warehouse.gold.session_ranges"
    [asset] = [a for a in defs.assets or () if isinstance(a, dg.AssetsDefinition)]
    assert asset.get_io_manager_key_for_asset_key(KEY) == "warehouse_io_manager"
    assert asset.op.retry_policy == WAREHOUSE_RETRY_POLICY
    checks = {k.name: graph.get(k) for k in node.check_keys}
    assert set(checks) == {"contract", "keys", "column_schema_change"}
    assert not checks["contract"].blocking  # blocking is silver's (BLOCKING_LAYERS)
    assert KEY in cadence.daily_assets.resolve(graph)  # the close schedule and catch-up run it


def test_the_new_table_is_written_by_the_warehouse_io_manager_and_checked(domain):
    settings, _, defs = domain
    session = "2024-06-07"
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        partition_key=session, instance=batched_ephemeral_instance()
    )
    assert result.success
    written = query(settings, "SELECT * FROM gold.session_ranges ORDER BY ticker")
    assert list(written.columns) == SESSION_RANGES.column_names  # DDL from the contract
    assert len(written) == len(settings.tickers.split(","))
    assert set(written["session_date"].dt.date.astype(str)) == {session}
    verdicts = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert verdicts["keys"].passed
    contract = verdicts["contract"]
    assert not contract.passed
    assert contract.metadata["failing_tickers"].value == [BAD_TICKER]


def test_arguments_the_contract_decides_are_refused():
    with pytest.raises(
        TypeError, match=re.escape("gold.session_ranges: group_name, pool come from")
    ):
        table_asset(SESSION_RANGES, cadence=cadence.DAILY, kinds={"sql"}, group_name="x", pool="y")
    with pytest.raises(
        ValueError, match=re.escape("gold.session_ranges: say how the asset computes")
    ):
        table_asset(SESSION_RANGES, cadence=cadence.DAILY, kinds=())


def test_only_session_partitions_or_none():
    by_month = TableContract(
        table="gold.monthly",
        description="Partitioned by month.",
        columns=(Col("month", "DATE", "Month."),),
        key=("month",),
        partition_column="month",
        ticker_column=None,
    )
    with pytest.raises(ValueError, match=re.escape("gold.monthly: partition column 'month'")):
        table_asset(by_month, cadence=cadence.DAILY, kinds={"sql"})
    whole = TableContract(
        table="silver.whole",
        description="Not partitioned.",
        columns=(Col("ticker", "VARCHAR", "Symbol."),),
        key=("ticker",),
        partition_column=None,
    )
    assert table_spec(whole, cadence=cadence.REFERENCE, kinds={"sql"}).partitions_def is None
    with pytest.raises(ValueError, match="must share their partitions"):
        table_multi_asset(
            table_spec(whole, cadence=cadence.DAILY, kinds={"sql"}),
            table_spec(SESSION_RANGES, cadence=cadence.DAILY, kinds={"sql"}),
            name="mixed",
        )


def test_two_different_contracts_for_one_table_are_an_error():
    module = types.ModuleType("marketflow_assets.contracts.copy")
    module.RANGES = SESSION_RANGES
    module.RANGES_AGAIN = SESSION_RANGES  # the same contract under two names is fine
    module.RANGES_EDITED = TableContract(
        table=SESSION_RANGES.table,
        description="A copy that drifted.",
        columns=SESSION_RANGES.columns[:2],
        key=SESSION_RANGES.key,
    )
    with pytest.raises(ValueError, match=r"two contracts for gold\.session_ranges: .*RANGES, "):
        contracts_of((module,))
