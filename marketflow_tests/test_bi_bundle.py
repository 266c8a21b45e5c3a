"""The dashboards-as-code bundle (bi/) stays valid against the served tables and their contracts,
without Superset: every dataset names a served table (or SQL over served tables) and only
columns a contract defines, with the contract's descriptions; every chart's columns and SQL bind
against empty tables built from the contracts; re-building the bundle gives the same objects."""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from pathlib import Path

import pytest
import yaml

from marketflow_assets.bi.bundle import BI_DIR, BundleError, load_bundle, stable_uuid
from marketflow_assets.bi.served import SERVED_TABLES
from marketflow_assets.contracts import CONTRACTS
from marketflow_assets.serving.columns import served_table

SNAPSHOT = Path("/srv/marketflow/serving/current.duckdb")


@pytest.fixture(scope="module")
def bundle():
    return load_bundle()


@pytest.fixture(scope="module")
def files(bundle):
    with zipfile.ZipFile(io.BytesIO(bundle.zip_bytes(SNAPSHOT))) as zf:
        return {
            name.split("/", 1)[1]: yaml.safe_load(zf.read(name))
            for name in zf.namelist()
            if name.endswith(".yaml")
        }


def test_the_bundle_validates_against_the_contracts(bundle):
    bundle.validate()
    assert {d.slug for d in bundle.dashboards} == {
        "ticker",
        "crossovers-and-signals",
        "sectors",
        "intraday",
        "data-quality",
    }


def test_every_dataset_names_a_served_table_and_only_contract_columns(files):
    datasets = [body for path, body in files.items() if path.startswith("datasets/")]
    assert datasets
    for dataset in datasets:
        if dataset["sql"] is None:
            table = f"{dataset['schema']}.{dataset['table_name']}"
            assert table in SERVED_TABLES, f"{table} is not a served table"
            sources = [served_table(table)]
        else:
            sources = [served_table(t) for t in SERVED_TABLES if t in dataset["sql"]]
            assert sources, f"{dataset['table_name']}: its SQL reads no served table"
        for column in dataset["columns"]:
            defined = [c for t in sources for c in t.columns if c.name == column["column_name"]]
            assert defined, f"{dataset['table_name']}.{column['column_name']} has no contract"
            # Descriptions and types come from the contract, never a hand-made copy.
            assert column["description"] == defined[0].description
            assert column["type"] == defined[0].sql_type


def test_descriptions_follow_a_contract_change(tmp_path, monkeypatch, bundle):
    """Generated, not copied: change a contract's description and the dataset follows."""
    contract = CONTRACTS["gold.daily_features"]
    changed = tuple(
        dataclasses.replace(c, description="RSI, changed in the contract.")
        if c.name == "rsi_14"
        else c
        for c in contract.columns
    )
    monkeypatch.setitem(
        CONTRACTS, "gold.daily_features", dataclasses.replace(contract, columns=changed)
    )
    files = bundle.files(SNAPSHOT)
    dataset = yaml.safe_load(files["datasets/marketflow/daily_features.yaml"])
    rsi = next(c for c in dataset["columns"] if c["column_name"] == "rsi_14")
    assert rsi["description"] == "RSI, changed in the contract."


def test_dbt_mart_columns_come_from_the_marts_schema(files):
    marts = yaml.safe_load((BI_DIR.parent / "dbt/models/marts/schema.yml").read_text())
    crossovers = next(m for m in marts["models"] if m["name"] == "ma_crossovers")
    dataset = files["datasets/marketflow/ma_crossovers.yaml"]
    assert [c["column_name"] for c in dataset["columns"]] == [
        c["name"] for c in crossovers["columns"]
    ]


def test_the_database_is_the_snapshot_read_only(files):
    database = files["databases/marketflow.yaml"]
    assert database["sqlalchemy_uri"] == f"duckdb:///{SNAPSHOT}"
    assert database["extra"]["engine_params"]["connect_args"] == {"read_only": True}
    assert not database["allow_dml"]
    assert database["expose_in_sqllab"]


def test_charts_and_filters_point_at_bundle_objects(files, bundle):
    dataset_uuids = {b["uuid"] for p, b in files.items() if p.startswith("datasets/")}
    charts = {b["uuid"]: b for p, b in files.items() if p.startswith("charts/")}
    assert len(charts) == len(bundle.charts)  # titles are unique per dashboard
    for chart in charts.values():
        assert chart["dataset_uuid"] in dataset_uuids
        context = json.loads(chart["query_context"])
        assert context["queries"][0]["row_limit"] > 0
    for path, dashboard in files.items():
        if not path.startswith("dashboards/"):
            continue
        placed = {
            node["meta"]["uuid"]
            for node in dashboard["position"].values()
            if isinstance(node, dict) and node.get("type") == "CHART"
        }
        assert placed <= set(charts)
        for native in dashboard["metadata"]["native_filter_configuration"]:
            for target in native["targets"]:
                assert not target or target["datasetUuid"] in dataset_uuids


def test_uuids_are_stable_across_builds(bundle):
    """Re-importing updates the same Superset objects instead of adding copies."""
    again = load_bundle()
    assert [c.uuid for c in again.charts] == [c.uuid for c in bundle.charts]
    assert stable_uuid("dashboard", "ticker") == again.dashboards[0].uuid


def _write_bi(tmp_path: Path, datasets: str, chart: str) -> Path:
    (tmp_path / "dashboards").mkdir(parents=True)
    (tmp_path / "datasets.yaml").write_text(datasets)
    (tmp_path / "dashboards" / "x.yaml").write_text(
        "title: X\nslug: x\nrows:\n  - - " + chart.replace("\n", "\n      ")
    )
    return tmp_path


def test_a_dataset_on_a_table_that_is_not_served_is_rejected(tmp_path):
    bi = _write_bi(
        tmp_path,
        "datasets:\n  - {name: daily_bars, table: bronze.daily_bars, time_column: session_date}\n",
        "title: Bars\nviz: table\ndataset: daily_bars\ncolumns: [ticker]",
    )
    with pytest.raises(BundleError, match=r"bronze\.daily_bars is not a served table"):
        load_bundle(bi).validate()


def test_a_chart_column_the_contract_does_not_define_is_rejected(tmp_path):
    bi = _write_bi(
        tmp_path,
        "datasets:\n  - {name: daily_features, table: gold.daily_features, time_column: session_date}\n",
        "title: RSI\nviz: line\ndataset: daily_features\nx: session_date\nmetrics: {RSI: MAX(rsi_99)}",
    )
    with pytest.raises(BundleError, match=r"chart 'RSI' \(X\) does not bind.*rsi_99"):
        load_bundle(bi).validate()
    bi2 = _write_bi(
        tmp_path / "b",
        "datasets:\n  - {name: daily_features, table: gold.daily_features, time_column: session_date}\n",
        "title: Sector\nviz: table\ndataset: daily_features\ncolumns: [sector]",
    )
    with pytest.raises(BundleError, match=r"column 'sector' is not in dataset daily_features"):
        load_bundle(bi2).validate()


def test_a_virtual_dataset_column_without_a_contract_is_rejected(tmp_path):
    bi = _write_bi(
        tmp_path,
        "datasets:\n  - name: v\n    columns_from: [gold.daily_features]\n"
        "    sql: SELECT ticker, adj_close * 2 AS doubled FROM gold.daily_features\n",
        "title: V\nviz: table\ndataset: v\ncolumns: [ticker]",
    )
    with pytest.raises(BundleError, match=r"column 'doubled' is defined by none of"):
        load_bundle(bi).validate()


def test_a_sub_query_in_chart_sql_is_rejected(tmp_path):
    """Superset answers such a chart with ADHOC_SUBQUERY_NOT_ALLOWED_ERROR."""
    bi = _write_bi(
        tmp_path,
        "datasets:\n  - {name: daily_features, table: gold.daily_features, time_column: session_date}\n",
        "title: Latest\nviz: table\ndataset: daily_features\ncolumns: [ticker]\n"
        "where: session_date = (SELECT max(session_date) FROM gold.daily_features)",
    )
    with pytest.raises(BundleError, match="sub-queries"):
        load_bundle(bi).validate()


def test_a_published_snapshot_carries_the_contract_descriptions_as_comments(tmp_path):
    """SQL Lab and any DuckDB client see each served column's contract description
    (`COMMENT ON`), also after a publish that rebuilds a table (which drops its comments)."""
    import duckdb

    from marketflow_assets.bi.bundle import contract_ddl
    from marketflow_assets.serving.publish import publish_snapshot

    warehouse = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    for statement in contract_ddl():
        warehouse.execute(statement)
    warehouse.execute("CREATE TABLE silver._private (x INTEGER)")  # not served, not commented
    root = tmp_path / "serving"
    publish_snapshot(warehouse, root, run_id="first")
    warehouse.execute("ALTER TABLE gold.daily_features ADD COLUMN extra DOUBLE")  # a rebuild
    publish_snapshot(warehouse, root, run_id="second")
    warehouse.close()

    snapshot = duckdb.connect(str(root / "current.duckdb"), read_only=True)
    comments = {
        (f"{schema}.{table}", column): comment
        for schema, table, column, comment in snapshot.execute(
            "SELECT schema_name, table_name, column_name, comment FROM duckdb_columns() "
            "WHERE schema_name IN ('silver', 'gold', 'ops')"
        ).fetchall()
    }
    tables = dict(
        snapshot.execute(
            "SELECT schema_name || '.' || table_name, comment FROM duckdb_tables() "
            "WHERE schema_name IN ('silver', 'gold', 'ops')"
        ).fetchall()
    )
    snapshot.close()
    assert set(tables) == set(SERVED_TABLES)
    for table in SERVED_TABLES:
        contract = served_table(table)
        assert tables[table] == contract.description, table
        for column in contract.columns:
            assert comments[(table, column.name)] == column.description, (table, column.name)
    # A column no contract defines stays without a description, never a made-up one.
    assert comments[("gold.daily_features", "extra")] is None


def test_served_tables_follow_the_serving_rule():
    """The BI layer's table list is the serving package's rule applied to the contracts: every
    contracted silver and gold table plus ops.check_results, nothing else from ops or bronze."""
    assert "silver.bar_repairs" in SERVED_TABLES
    assert "ops.check_results" in SERVED_TABLES
    assert not [t for t in SERVED_TABLES if t.startswith("bronze.")]
    assert "ops.alert_history" not in SERVED_TABLES
    contracted = {t for t in CONTRACTS if t.split(".")[0] in ("silver", "gold")}
    assert contracted <= set(SERVED_TABLES)


def test_superset_reads_the_current_symlink_not_the_snapshot_it_points_to(tmp_path, bundle):
    """`current.duckdb` is a symlink the publisher switches on every publish: the registered
    database must name the link, or Superset stays on one snapshot forever."""
    from marketflow_assets.bi.superset import BiConfig

    home = tmp_path / "home"
    (home / "serving" / "snapshots").mkdir(parents=True)
    (home / "serving" / "snapshots" / "one.duckdb").touch()
    (home / "serving" / "current.duckdb").symlink_to(Path("snapshots") / "one.duckdb")
    config = BiConfig.from_env({"MARKETFLOW_HOME": str(home)})
    assert config.snapshot == (home / "serving" / "current.duckdb").absolute()
    with zipfile.ZipFile(io.BytesIO(bundle.zip_bytes(config.snapshot))) as zf:
        database = yaml.safe_load(zf.read("marketflow_dashboards/databases/marketflow.yaml"))
    assert database["sqlalchemy_uri"] == f"duckdb:///{config.snapshot}"
